// The graph page: an attribution graph drawn as SVG from /api/graphs/{id}. Nodes sit by layer (tokens at the
// bottom, logits at the top) and by token position (across); edges are coloured by sign and sized by weight.
// The thresholds filter what the catalog kept; a click selects a node, which can be pinned, and pinned nodes
// are saved as a named group. Every string from the catalog is set as text (textContent), never as markup.
const SVG = "http://www.w3.org/2000/svg";

function svgElement(name, attributes) {
  const element = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) element.setAttribute(key, value);
  return element;
}

function text(tag, content, className) {
  const element = document.createElement(tag);
  element.textContent = content;
  if (className) element.className = className;
  return element;
}

function describe(node) {
  const parts = [node.name + " at " + JSON.stringify(node.token)];
  if (node.kind === "feature") parts.push("activation " + node.value.toFixed(3));
  if (node.influence !== null) parts.push("cumulative influence " + node.influence.toFixed(3));
  if (node.check_predicted !== undefined) {
    parts.push("ablated: predicted " + node.check_predicted.toFixed(2) + ", measured " + node.check_measured.toFixed(2));
    if (node.check_perturbed !== null && node.check_perturbed !== undefined) {
      parts.push("x0.9: predicted " + (0.1 * node.check_predicted).toFixed(3) + ", measured " + node.check_perturbed.toFixed(3));
    }
  }
  return parts.join("; ");
}

document.addEventListener("DOMContentLoaded", async () => {
  const svg = document.querySelector("svg.graph");
  if (!svg) return;
  const controls = document.querySelector("form.graph-controls");
  const side = document.querySelector("aside.graph-side");
  const status = side.querySelector(".status");
  const data = await (await fetch(svg.dataset.src)).json();
  const graph = data.graph;
  const nPositions = graph.tokens.length;
  const rows = graph.n_layers + 2; // tokens, layers 0..n-1, logits
  const rowHeight = 34;
  const row = (node) => node.kind === "token" ? 0 : node.kind === "logit" ? rows - 1 : node.layer + 1;
  const cells = new Map();
  for (const node of data.nodes) {
    const key = row(node) + ":" + node.position;
    if (!cells.has(key)) cells.set(key, []);
    cells.get(key).push(node);
  }
  // A position's column is as wide as its most crowded layer needs: the last token holds most nodes.
  const crowd = new Array(nPositions).fill(1);
  for (const [key, members] of cells) {
    const position = Number(key.split(":")[1]);
    crowd[position] = Math.max(crowd[position], members.length);
  }
  const columnWidth = crowd.map((count) => Math.max(70, 16 * count));
  const columnStart = [];
  columnWidth.reduce((start, width, position) => { columnStart[position] = start; return start + width; }, 20);
  const width = columnStart[nPositions - 1] + columnWidth[nPositions - 1] + 20;
  const height = rowHeight * rows + 40;
  svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  for (const members of cells.values()) {
    members.sort((a, b) => (a.influence ?? 0) - (b.influence ?? 0));
    members.forEach((node, index) => {
      const spread = columnWidth[node.position] - 20;
      node.x = columnStart[node.position] + 10 + (members.length > 1 ? (spread * index) / (members.length - 1) : spread / 2);
      node.y = height - 30 - row(node) * rowHeight;
    });
  }
  const byId = new Map(data.nodes.map((node) => [node.node, node]));

  // Edges by weight share: the strongest first, each with the share of all |weight| up to and including it.
  const edges = data.edges.filter((edge) => byId.has(edge.source) && byId.has(edge.target));
  edges.sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight));
  const total = edges.reduce((sum, edge) => sum + Math.abs(edge.weight), 0) || 1;
  let running = 0;
  for (const edge of edges) {
    running += Math.abs(edge.weight);
    edge.share = running / total;
  }
  const heaviest = edges.length ? Math.abs(edges[0].weight) : 1;

  const edgeLayer = svgElement("g", { class: "edges" });
  const nodeLayer = svgElement("g", { class: "nodes" });
  const labelLayer = svgElement("g", { class: "labels" });
  svg.append(edgeLayer, nodeLayer, labelLayer);
  graph.tokens.forEach((token, position) => {
    const label = svgElement("text", { x: columnStart[position] + columnWidth[position] / 2, y: height - 8, class: "token-label" });
    label.textContent = token;
    labelLayer.append(label);
  });
  for (const edge of edges) {
    const source = byId.get(edge.source);
    const target = byId.get(edge.target);
    edge.element = svgElement("line", {
      x1: source.x, y1: source.y, x2: target.x, y2: target.y,
      class: "edge " + (edge.weight >= 0 ? "positive" : "negative"),
      "stroke-width": (0.4 + (3 * Math.abs(edge.weight)) / heaviest).toFixed(2),
    });
    edgeLayer.append(edge.element);
  }

  const pinned = new Set();
  let selected = null;
  const hovered = side.querySelector(".hovered");
  const selectedBox = side.querySelector(".selected");
  const pinnedList = side.querySelector("ul.pinned");

  function showPinned() {
    pinnedList.replaceChildren();
    for (const id of pinned) {
      const node = byId.get(id);
      const item = text("li", node.name + " at " + JSON.stringify(node.token) + " ");
      const remove = text("button", "unpin");
      remove.type = "button";
      remove.addEventListener("click", () => { pinned.delete(id); node.element.classList.remove("pinned"); showPinned(); });
      item.append(remove);
      pinnedList.append(item);
    }
  }

  function select(node) {
    if (selected) selected.element.classList.remove("selected");
    selected = node;
    node.element.classList.add("selected");
    selectedBox.replaceChildren(text("strong", node.name), text("p", describe(node), "meta"));
    if (node.label) selectedBox.append(text("p", node.label, "label"));
    if (node.href) {
      const link = text("a", "open its feature page");
      link.setAttribute("href", node.href);
      link.className = "feature-link";
      selectedBox.append(link);
    }
    const pin = text("button", pinned.has(node.node) ? "unpin" : "pin");
    pin.type = "button";
    pin.className = "pin";
    pin.addEventListener("click", () => {
      if (pinned.has(node.node)) { pinned.delete(node.node); node.element.classList.remove("pinned"); }
      else { pinned.add(node.node); node.element.classList.add("pinned"); }
      pin.textContent = pinned.has(node.node) ? "unpin" : "pin";
      showPinned();
    });
    selectedBox.append(pin);
  }

  for (const node of data.nodes) {
    const attributes = { cx: node.x, cy: node.y, r: node.kind === "feature" ? 6 : 5, class: "node " + node.kind };
    node.element = svgElement(node.kind === "error" ? "rect" : "circle", node.kind === "error"
      ? { x: node.x - 5, y: node.y - 5, width: 10, height: 10, class: "node error" } : attributes);
    node.element.dataset.node = node.node;
    node.element.addEventListener("mouseenter", () => {
      hovered.replaceChildren(text("strong", node.name), text("span", " " + describe(node)));
      if (node.label) hovered.append(text("p", node.label, "label"));
    });
    node.element.addEventListener("click", () => select(node));
    nodeLayer.append(node.element);
  }

  function filter() {
    const nodeLimit = parseFloat(controls.nodes.value);
    const edgeLimit = parseFloat(controls.edges.value);
    controls.nodes_shown.value = nodeLimit.toFixed(2);
    controls.edges_shown.value = edgeLimit.toFixed(2);
    let nodesShown = 0;
    let edgesShown = 0;
    for (const node of data.nodes) {
      node.shown = node.kind === "token" || node.kind === "logit" || pinned.has(node.node) || nodeLimit >= 1 ||
        (node.influence ?? 1) <= nodeLimit;
      node.element.classList.toggle("hidden", !node.shown);
      nodesShown += node.shown;
    }
    for (const edge of edges) {
      const shown = (edgeLimit >= 1 || edge.share <= edgeLimit) && byId.get(edge.source).shown && byId.get(edge.target).shown;
      edge.element.classList.toggle("hidden", !shown);
      edgesShown += shown;
    }
    controls.querySelector(".counts").textContent = `${nodesShown} nodes, ${edgesShown} edges shown`;
  }
  controls.addEventListener("input", filter);
  filter();

  const groupsList = side.querySelector("ul.groups");
  function showGroups(groups) {
    groupsList.replaceChildren();
    for (const group of groups) {
      const item = text("li", group.name + " (" + group.nodes.length + " nodes)");
      item.className = "group";
      item.addEventListener("mouseenter", () => group.nodes.forEach((id) => byId.get(id)?.element.classList.add("grouped")));
      item.addEventListener("mouseleave", () => group.nodes.forEach((id) => byId.get(id)?.element.classList.remove("grouped")));
      groupsList.append(item);
    }
  }
  showGroups(data.groups);
  async function saveGroup(name, nodes) {
    const response = await fetch(svg.dataset.src + "/groups", {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ name, nodes }),
    });
    const body = await response.json();
    if (!response.ok) { status.textContent = body.error || "not saved"; return; }
    status.textContent = "saved group " + name;
    showGroups(body.groups);
  }
  side.querySelector("form.group").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = event.target.name.value.trim();
    if (!name || pinned.size === 0) { status.textContent = "pin nodes and name them first"; return; }
    saveGroup(name, [...pinned]);
  });
  // Suggested groups: shown, highlighted on hover, saved only when accepted.
  const suggestions = side.querySelector("ul.suggestions");
  side.querySelector("button.suggest").addEventListener("click", async () => {
    const body = await (await fetch(svg.dataset.src + "/suggestions")).json();
    suggestions.replaceChildren();
    if (!body.suggestions.length) suggestions.append(text("li", "no alike nodes found", "meta"));
    for (const group of body.suggestions) {
      const item = text("li", group.name + " (" + group.nodes.length + " nodes, similarity " + group.similarity.toFixed(2) + ") ");
      item.className = "suggestion";
      const accept = text("button", "accept");
      accept.type = "button";
      accept.addEventListener("click", () => { saveGroup(group.name, group.nodes); item.remove(); });
      item.append(accept);
      item.addEventListener("mouseenter", () => group.nodes.forEach((id) => byId.get(id)?.element.classList.add("grouped")));
      item.addEventListener("mouseleave", () => group.nodes.forEach((id) => byId.get(id)?.element.classList.remove("grouped")));
      suggestions.append(item);
    }
  });
});
