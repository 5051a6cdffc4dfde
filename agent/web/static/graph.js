// The graph page: four panes over /api/graphs/{id}, as Neuronpedia's and circuit-tracer's graph viewers lay them
// out. The link graph (a canvas, so 20k edges in the catalog cost nothing until a node is clicked) draws only the
// clicked node's edges (or the pinned nodes' when none is), each coloured by its share of its target's total
// |input| (circuit-tracer's pctInput). Node connections list the clicked node's inputs and outputs; the subgraph
// draws the pinned nodes bottom to top with groups collapsed into one box; the feature detail reads the node's
// examples, histogram, logits and labels from the catalog, and takes a person's label.
// The view (clicked node, pins, groups, thresholds) lives in the URL, so a link reproduces it. Every string from
// the catalog is set as text (textContent), never as markup.
const SVG = "http://www.w3.org/2000/svg";
const BLUE = [36, 113, 163];
const RED = [192, 57, 43];
const KIND_COLOUR = { feature: "#e9b949", error: "#b0b0b8", token: "#8fd19e", logit: "#6b7cff" };
const HOVER_RADIUS = 14;

function element(tag, content, className) {
  const made = document.createElement(tag);
  if (content !== undefined && content !== null) made.textContent = content;
  if (className) made.className = className;
  return made;
}

function svgElement(name, attributes) {
  const made = document.createElementNS(SVG, name);
  for (const [key, value] of Object.entries(attributes)) made.setAttribute(key, value);
  return made;
}

function button(label, className, onClick) {
  const made = element("button", label, className);
  made.type = "button";
  made.addEventListener("click", onClick);
  return made;
}

function rgba(colour, alpha) {
  return `rgba(${colour[0]}, ${colour[1]}, ${colour[2]}, ${alpha.toFixed(3)})`;
}

function percent(share) {
  return (100 * share).toFixed(Math.abs(share) < 0.1 ? 1 : 0) + "%";
}

async function postJson(url, body) {
  const response = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const answer = await response.json();
  if (!response.ok) throw new Error(answer.error || answer.detail?.[0]?.msg || "not saved");
  return answer;
}

// The view in the URL: ?clicked=N&pinned=1,2&nodes=0.8&density=0.67&groups=[["name",1,2]]
function readView() {
  const query = new URLSearchParams(location.search);
  const numbers = (value) => (value ? value.split(",").filter(Boolean).map(Number) : null);
  let groups = null;
  try { groups = query.has("groups") ? JSON.parse(query.get("groups")) : null; } catch { groups = null; }
  return {
    clicked: query.has("clicked") ? Number(query.get("clicked")) : null,
    pinned: query.has("pinned") ? numbers(query.get("pinned")) : null,
    nodes: query.has("nodes") ? Number(query.get("nodes")) : null,
    density: query.has("density") ? Number(query.get("density")) : null,
    groups: Array.isArray(groups) ? groups.map(([name, ...nodes]) => ({ name: String(name), nodes: nodes.map(Number) })) : null,
  };
}

document.addEventListener("DOMContentLoaded", async () => {
  const panes = document.querySelector(".graph-panes");
  if (!panes) return;
  const src = panes.dataset.src;
  const controls = document.querySelector("form.graph-controls");
  const status = panes.querySelector(".status");
  const data = await (await fetch(src)).json();
  const graph = data.graph;
  const byId = new Map(data.nodes.map((node) => [node.node, node]));
  const edges = data.edges.filter((edge) => byId.has(edge.source) && byId.has(edge.target));

  // Each node's total |input| over the catalog's edges: an edge's share of it is its pctInput.
  const totalInput = new Map();
  for (const node of data.nodes) { node.inputs = []; node.outputs = []; }
  for (const edge of edges) {
    totalInput.set(edge.target, (totalInput.get(edge.target) || 0) + Math.abs(edge.weight));
    byId.get(edge.target).inputs.push(edge);
    byId.get(edge.source).outputs.push(edge);
  }
  for (const edge of edges) edge.share = edge.weight / (totalInput.get(edge.target) || 1);
  for (const node of data.nodes) {
    node.inputs.sort((a, b) => Math.abs(b.weight) - Math.abs(a.weight));
    node.outputs.sort((a, b) => Math.abs(b.share) - Math.abs(a.share));
  }

  const rows = graph.n_layers + 2; // Emb, L0 .. L(n-1), Lgt
  const row = (node) => node.kind === "token" ? 0 : node.kind === "logit" ? rows - 1 : node.layer + 1;
  const rowName = (index) => index === 0 ? "Emb" : index === rows - 1 ? "Lgt" : "L" + (index - 1);

  const view = readView();
  const state = {
    clicked: view.clicked !== null && byId.has(view.clicked) ? view.clicked : null,
    pinned: new Set((view.pinned ?? data.pinned).filter((id) => byId.has(id))),
    groups: (view.groups ?? data.groups).map((group) => ({ name: group.name, nodes: group.nodes.filter((id) => byId.has(id)) })),
    checked: new Set(),
  };
  if (view.nodes !== null && !Number.isNaN(view.nodes)) controls.nodes.value = view.nodes;
  if (view.density !== null && !Number.isNaN(view.density)) controls.density.value = view.density;
  if (state.clicked === null) {
    const logits = data.nodes.filter((node) => node.kind === "logit");
    logits.sort((a, b) => (b.probability ?? 0) - (a.probability ?? 0));
    if (logits.length) state.clicked = logits[0].node;
  }

  function writeView() {
    const query = new URLSearchParams();
    if (state.clicked !== null) query.set("clicked", state.clicked);
    query.set("pinned", [...state.pinned].join(","));
    query.set("nodes", controls.nodes.value);
    query.set("density", controls.density.value);
    query.set("groups", JSON.stringify(state.groups.map((group) => [group.name, ...group.nodes])));
    history.replaceState(null, "", location.pathname + "?" + query.toString());
  }

  // ---- Link graph -------------------------------------------------------------------------------------------
  const canvas = panes.querySelector("canvas.graph");
  const tip = panes.querySelector(".canvas-box .tip");
  const context = canvas.getContext("2d");
  const margin = { left: 46, right: 12, top: 34, bottom: 64 };
  const rowHeight = Math.max(16, Math.min(30, 600 / rows));
  const crowd = new Array(graph.tokens.length).fill(1);
  const cells = new Map();
  for (const node of data.nodes) {
    const key = row(node) + ":" + node.position;
    if (!cells.has(key)) cells.set(key, []);
    cells.get(key).push(node);
  }
  for (const [key, members] of cells) {
    const [rowIndex, position] = key.split(":").map(Number);
    if (rowIndex !== rows - 1) crowd[position] = Math.max(crowd[position], members.length);
    members.sort((a, b) => (a.influence ?? 0) - (b.influence ?? 0) || a.node - b.node);
  }
  const logitNodes = data.nodes.filter((node) => node.kind === "logit").sort((a, b) => b.probability - a.probability);
  // A crowded position gets a wider column, but sub-linearly, so a 17-token prompt still fits one pane.
  const columnWeight = crowd.map((count) => Math.sqrt(count));
  let width = 0;
  const height = margin.top + margin.bottom + rowHeight * (rows - 1);

  function layout() {
    width = Math.max(320, canvas.parentElement.clientWidth);
    const ratio = window.devicePixelRatio || 1;
    canvas.width = Math.round(width * ratio);
    canvas.height = Math.round(height * ratio);
    canvas.style.width = width + "px";
    canvas.style.height = height + "px";
    context.setTransform(ratio, 0, 0, ratio, 0, 0);
    const total = columnWeight.reduce((sum, weight) => sum + weight, 0);
    const usable = width - margin.left - margin.right;
    let start = margin.left;
    graph.columns = columnWeight.map((weight) => {
      const column = { start, width: (usable * weight) / total };
      start += column.width;
      return column;
    });
    // The logits share one position; they spread across the whole top row, most probable first, so their
    // labels can be read.
    logitNodes.forEach((node, index) => {
      node.x = margin.left + (usable * (index + 0.5)) / logitNodes.length;
      node.y = margin.top;
    });
    for (const [key, members] of cells) {
      const [rowIndex, position] = key.split(":").map(Number);
      if (rowIndex === rows - 1) continue;
      const column = graph.columns[position];
      const pad = Math.min(6, column.width / 4);
      members.forEach((node, index) => {
        node.x = column.start + pad + ((column.width - 2 * pad) * (index + 0.5)) / members.length;
        node.y = margin.top + (rows - 1 - rowIndex) * rowHeight;
      });
    }
  }

  // The nodes the thresholds keep (tokens, logits, pinned and clicked nodes always), the sliders read once.
  function shownNodes() {
    const nodeLimit = parseFloat(controls.nodes.value);
    const densityLimit = parseFloat(controls.density.value);
    return data.nodes.filter((node) => {
      if (node.kind === "token" || node.kind === "logit" || state.pinned.has(node.node) || node.node === state.clicked) return true;
      if (nodeLimit < 1 && (node.influence ?? 0) > nodeLimit) return false;
      return !(node.kind === "feature" && densityLimit < 1 && node.density !== null && node.density !== undefined && node.density > densityLimit);
    });
  }

  // The edges drawn: the clicked node's, else the pinned nodes'.
  function focusEdges() {
    const focus = state.clicked !== null ? [state.clicked] : [...state.pinned];
    const drawn = new Set();
    for (const id of focus) for (const edge of [...byId.get(id).inputs, ...byId.get(id).outputs]) drawn.add(edge);
    return [...drawn];
  }

  // Each node's edge to the clicked node, as a share of the target's input: what colours it.
  function shareToClicked() {
    const shares = new Map();
    if (state.clicked === null) return shares;
    const clicked = byId.get(state.clicked);
    for (const edge of clicked.inputs) shares.set(edge.source, edge.share);
    for (const edge of clicked.outputs) shares.set(edge.target, edge.share);
    return shares;
  }

  let visibleNodes = [];
  function draw() {
    context.clearRect(0, 0, width, height);
    context.font = "11px system-ui, sans-serif";
    context.textBaseline = "middle";
    context.fillStyle = "#555";
    context.strokeStyle = "#eceef3";
    context.lineWidth = 1;
    for (let index = 0; index < rows; index += 1) {
      const y = margin.top + (rows - 1 - index) * rowHeight;
      context.textAlign = "right";
      context.fillText(rowName(index), margin.left - 8, y);
      context.beginPath();
      context.moveTo(margin.left, y);
      context.lineTo(width - margin.right, y);
      context.stroke();
    }
    // Token labels under their columns, logit labels over their nodes, both slanted to fit.
    context.textAlign = "right";
    graph.tokens.forEach((token, position) => {
      const column = graph.columns[position];
      context.save();
      context.translate(column.start + column.width / 2, height - margin.bottom + 12);
      context.rotate(-Math.PI / 5);
      context.fillText(token.length > 14 ? token.slice(0, 13) + "…" : token, 0, 0);
      context.restore();
    });
    visibleNodes = shownNodes();
    const visibleIds = new Set(visibleNodes.map((node) => node.node));
    let edgesDrawn = 0;
    for (const edge of focusEdges()) {
      if (!visibleIds.has(edge.source) || !visibleIds.has(edge.target)) continue;
      const source = byId.get(edge.source);
      const target = byId.get(edge.target);
      const strength = Math.min(1, Math.abs(edge.share));
      context.strokeStyle = rgba(edge.weight >= 0 ? BLUE : RED, 0.15 + 0.85 * strength);
      context.lineWidth = 0.6 + 4 * strength;
      context.beginPath();
      context.moveTo(source.x, source.y);
      context.lineTo(target.x, target.y);
      context.stroke();
      edgesDrawn += 1;
    }
    const shares = shareToClicked();
    const radius = visibleNodes.length > 1500 ? 2.5 : 4;
    for (const node of visibleNodes) {
      let fill = KIND_COLOUR[node.kind];
      if (state.clicked !== null && node.node !== state.clicked) {
        const share = shares.get(node.node);
        fill = share === undefined ? "rgba(200, 200, 206, 0.55)" : rgba(share >= 0 ? BLUE : RED, 0.25 + 0.75 * Math.min(1, Math.abs(share) * 3));
      }
      context.fillStyle = fill;
      context.beginPath();
      if (node.kind === "error") context.rect(node.x - radius, node.y - radius, 2 * radius, 2 * radius);
      else context.arc(node.x, node.y, node.kind === "feature" ? radius : radius + 1, 0, 2 * Math.PI);
      context.fill();
      if (node.node === state.clicked || state.pinned.has(node.node)) {
        context.lineWidth = 2;
        context.strokeStyle = node.node === state.clicked ? "#000" : "#c0392b";
        context.stroke();
      }
    }
    context.fillStyle = "#23283a";
    context.textAlign = "center";
    const room = (width - margin.left - margin.right) / Math.max(1, logitNodes.length);
    for (const node of logitNodes) {
      let label = `${node.target} ${percent(node.probability)}`;
      while (label.length > 4 && context.measureText(label).width > room - 4) label = label.slice(0, -2) + "…";
      context.fillText(label, node.x, node.y - 14);
    }
    canvas.dataset.edgesDrawn = edgesDrawn;
    canvas.dataset.nodesDrawn = visibleNodes.length;
    controls.querySelector(".counts").textContent = `${visibleNodes.length} of ${data.nodes.length} nodes, ${edgesDrawn} edges drawn (${edges.length} in the catalog)`;
  }

  function nearest(x, y) {
    let best = null;
    let bestDistance = HOVER_RADIUS * HOVER_RADIUS;
    for (const node of visibleNodes) {
      const distance = (node.x - x) ** 2 + (node.y - y) ** 2;
      if (distance <= bestDistance) { best = node; bestDistance = distance; }
    }
    return best;
  }

  function pointer(event) {
    const box = canvas.getBoundingClientRect();
    return nearest(event.clientX - box.left, event.clientY - box.top);
  }

  let hoverFrame = null;
  canvas.addEventListener("mousemove", (event) => {
    if (hoverFrame !== null) return;
    hoverFrame = requestAnimationFrame(() => {
      hoverFrame = null;
      const node = pointer(event);
      canvas.style.cursor = node ? "pointer" : "default";
      if (!node) { tip.hidden = true; return; }
      tip.replaceChildren(element("strong", node.name), element("div", describe(node), "meta"));
      if (node.label) tip.append(element("div", node.label, "label"));
      tip.style.left = Math.min(node.x + 12, width - 260) + "px";
      tip.style.top = node.y + 10 + "px";
      tip.hidden = false;
    });
  });
  canvas.addEventListener("mouseleave", () => { tip.hidden = true; });
  canvas.addEventListener("click", (event) => {
    const node = pointer(event);
    if (!node) { // a click on empty space clears the selection: the pinned nodes' edges are drawn instead
      state.clicked = null;
      refresh();
      showDetail();
      return;
    }
    if (event.shiftKey) togglePin(node.node);
    else select(node.node);
  });

  function describe(node) {
    const parts = [];
    if (node.kind === "feature") parts.push("activation " + node.value.toFixed(3));
    if (node.kind === "logit") parts.push("probability " + node.probability.toFixed(3));
    if (node.density !== null && node.density !== undefined) parts.push("active on " + percent(node.density) + " of tokens");
    if (node.influence !== null && node.influence !== undefined) parts.push("cumulative influence " + node.influence.toFixed(3));
    if (node.check_predicted !== undefined) {
      parts.push("ablated: predicted " + node.check_predicted.toFixed(2) + ", measured " + node.check_measured.toFixed(2));
      if (node.check_perturbed !== null && node.check_perturbed !== undefined) {
        parts.push("x0.9: predicted " + (0.1 * node.check_predicted).toFixed(3) + ", measured " + node.check_perturbed.toFixed(3));
      }
    }
    return parts.join("; ");
  }

  // ---- Node connections -------------------------------------------------------------------------------------
  const clickedBox = panes.querySelector(".connections .clicked");
  function connectionList(list, edgesOf, other) {
    list.replaceChildren();
    const all = edgesOf.filter((edge) => byId.has(other(edge)));
    for (const edge of all.slice(0, 200)) {
      const node = byId.get(other(edge));
      const item = element("li", null, "connection " + (edge.weight >= 0 ? "positive" : "negative"));
      item.dataset.node = node.node;
      item.append(element("span", edge.weight >= 0 ? "+" : "−", "sign"), element("span", node.name, "name"),
        element("span", rowName(row(node)), "layer"), element("span", edge.weight.toPrecision(3), "num weight"),
        element("span", percent(edge.share), "num share"));
      item.title = node.label || node.name;
      item.addEventListener("click", () => select(node.node));
      list.append(item);
    }
    if (all.length > 200) list.append(element("li", `and ${all.length - 200} more`, "meta"));
    if (!all.length) list.append(element("li", "none kept", "meta"));
  }

  function showConnections() {
    const inputs = panes.querySelector("ul.inputs");
    const outputs = panes.querySelector("ul.outputs");
    if (state.clicked === null) {
      clickedBox.replaceChildren(element("span", "Click a node; the pinned nodes' edges are drawn meanwhile."));
      inputs.replaceChildren();
      outputs.replaceChildren();
      return;
    }
    const node = byId.get(state.clicked);
    clickedBox.replaceChildren(element("strong", node.name), element("div", describe(node)));
    if (node.label) clickedBox.append(element("div", node.label, "label"));
    clickedBox.append(button(state.pinned.has(node.node) ? "unpin" : "pin", "pin", () => togglePin(node.node)));
    connectionList(inputs, node.inputs, (edge) => edge.source);
    connectionList(outputs, node.outputs, (edge) => edge.target);
  }

  // ---- Feature detail ---------------------------------------------------------------------------------------
  const detail = panes.querySelector(".detail-body");
  let detailRequest = 0;
  async function showDetail() {
    const request = ++detailRequest;
    if (state.clicked === null) { detail.replaceChildren(element("p", "Click a feature.", "meta")); return; }
    const node = byId.get(state.clicked);
    const body = await (await fetch(`${src}/nodes/${node.node}`)).json();
    if (request !== detailRequest) return; // a later click won
    renderDetail(node, body);
  }

  // The server lays the bars out (agent/web/plots.py, as on the feature page); the page adds this node's mark.
  function histogram(chart, high, mark) {
    const drawn = svgElement("svg", { class: "chart histogram", width: chart.width, height: chart.height + 14,
      viewBox: `0 0 ${chart.width} ${chart.height + 14}` });
    for (const bar of chart.bars) {
      const rect = svgElement("rect", { x: bar.x, y: bar.y, width: bar.width, height: bar.height });
      const title = svgElement("title", {});
      title.textContent = bar.title;
      rect.append(title);
      drawn.append(rect);
    }
    if (high > 0 && mark !== null && mark !== undefined) {
      const x = Math.min(chart.width - 1, (chart.width * mark) / high);
      drawn.append(svgElement("line", { x1: x, x2: x, y1: 0, y2: chart.height, class: "mark" }));
      const label = svgElement("text", { x: Math.min(x + 3, chart.width - 70), y: 9, class: "mark-label" });
      label.textContent = "this node " + mark.toPrecision(3);
      drawn.append(label);
    }
    const low = svgElement("text", { x: 0, y: chart.height + 12 });
    low.textContent = chart.low;
    const top = svgElement("text", { x: chart.width, y: chart.height + 12, "text-anchor": "end" });
    top.textContent = chart.high;
    drawn.append(low, top);
    return drawn;
  }

  function tokens(example) {
    const line = element("div", null, "tokens");
    for (const token of example.tokens) {
      const span = element("span", token.text, "tok a" + token.level);
      span.title = token.act.toPrecision(3);
      line.append(span);
    }
    return line;
  }

  function renderDetail(node, body) {
    detail.replaceChildren(element("strong", node.name), element("p", describe(node), "meta"));
    if (body.top_logits.length) {
      const logits = element("div", null, "logits");
      logits.append(element("span", "raises ", "meta"), ...body.top_logits.map((t) => element("code", t, "up")));
      logits.append(element("br"), element("span", "lowers ", "meta"), ...body.bottom_logits.map((t) => element("code", t, "down")));
      detail.append(logits);
    }
    if (body.missing) { detail.append(element("p", body.missing, "meta")); return; }
    if (node.kind !== "feature") return;
    // The label, editable in place: saved as a person's explanation (explainer "human").
    const form = element("form", null, "label-edit");
    const input = element("input");
    input.name = "label";
    input.maxLength = 500;
    input.value = node.label || "";
    input.placeholder = "what this feature stands for";
    form.append(input, element("button", "Save label"));
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      try {
        const saved = await postJson(`${src}/nodes/${node.node}/label`, { text: input.value });
        node.label = input.value.trim();
        status.textContent = "saved label of " + node.name;
        renderDetail(node, saved);
        showConnections();
        drawSubgraph();
      } catch (error) { status.textContent = error.message; }
    });
    detail.append(form);
    const stats = body.stats;
    const number = (value) => (value === null || value === undefined ? "–" : value.toPrecision(3));
    detail.append(element("p", `max ${number(stats.max_act)}, mean ${number(stats.mean_act)}, active on ${stats.density === null ? "–" : percent(stats.density)} of ${(stats.n_tokens ?? 0).toLocaleString()} tokens`, "meta"));
    detail.append(histogram(body.histogram.chart, body.histogram.high, node.value));
    const link = element("a", "open its feature page");
    link.href = body.href;
    link.className = "feature-link";
    detail.append(link);
    const explanations = element("div", null, "explanations");
    for (const explanation of [...body.explanations].reverse()) {
      const entry = element("div", null, "explanation");
      entry.append(element("div", explanation.text, "text"));
      const scores = explanation.scores.map((s) => `${s.scorer} ${s.metric} ${s.value === null ? "–" : s.value.toFixed(3)}`);
      entry.append(element("div", `${explanation.explainer}${explanation.llm ? " (" + explanation.llm + ")" : ""}; ${scores.join(", ") || "not scored"}`, "meta"));
      explanations.append(entry);
    }
    if (body.explanations.length) detail.append(element("h3", "Explanations"), explanations);
    const groups = new Map();
    for (const example of body.examples) {
      const name = example.bucket === "top" ? "Top activations" : example.bucket === "quantile" ? "Quantile " + example.quantile : "Random";
      if (!groups.has(name)) groups.set(name, []);
      groups.get(name).push(example);
    }
    for (const [name, examples] of groups) {
      detail.append(element("h3", name));
      const list = element("div", null, "examples");
      for (const example of examples.slice(0, 5)) list.append(tokens(example));
      detail.append(list);
    }
  }

  // ---- Subgraph ---------------------------------------------------------------------------------------------
  const subgraph = panes.querySelector("svg.subgraph");
  const scoresLine = panes.querySelector(".subgraph .scores");
  function groupOf(id) { return state.groups.find((group) => group.nodes.includes(id)); }

  // Units: each group is one box, every other pinned node its own.
  function units() {
    const members = new Set([...state.pinned, ...state.groups.flatMap((group) => group.nodes)]);
    const found = new Map();
    for (const id of members) {
      const group = groupOf(id);
      const key = group ? "g:" + group.name : "n:" + id;
      if (!found.has(key)) found.set(key, { key, group, nodes: [] });
      found.get(key).nodes.push(byId.get(id));
    }
    for (const unit of found.values()) {
      unit.row = Math.round(unit.nodes.reduce((sum, node) => sum + row(node), 0) / unit.nodes.length);
      unit.position = unit.nodes.reduce((sum, node) => sum + node.position, 0) / unit.nodes.length;
      const first = unit.nodes[0];
      unit.title = unit.group ? unit.group.name : first.kind === "feature" ? (first.label || first.name) : first.name;
      unit.caption = unit.group ? `${unit.nodes.length} nodes` : first.kind === "feature" && first.label ? first.name
        : first.kind === "feature" ? "activation " + first.value.toPrecision(3) : first.kind === "logit" ? percent(first.probability) : "";
    }
    return [...found.values()];
  }

  function drawSubgraph() {
    const drawn = units();
    subgraph.replaceChildren();
    const boxWidth = 150;
    const boxHeight = 40;
    const levels = [...new Set(drawn.map((unit) => unit.row))].sort((a, b) => a - b);
    const perLevel = Math.max(1, ...levels.map((level) => drawn.filter((unit) => unit.row === level).length));
    const svgWidth = Math.max(subgraph.parentElement.clientWidth - 4, perLevel * (boxWidth + 20) + 20);
    const svgHeight = Math.max(60, levels.length * (boxHeight + 46) + 20);
    subgraph.setAttribute("width", svgWidth);
    subgraph.setAttribute("height", svgHeight);
    subgraph.setAttribute("viewBox", `0 0 ${svgWidth} ${svgHeight}`);
    // Layered like dagre: bottom to top by layer, ordered across by token position.
    for (const level of levels) {
      const here = drawn.filter((unit) => unit.row === level).sort((a, b) => a.position - b.position);
      const y = svgHeight - 10 - boxHeight - levels.indexOf(level) * (boxHeight + 46);
      here.forEach((unit, index) => {
        unit.x = ((index + 1) * svgWidth) / (here.length + 1) - boxWidth / 2;
        unit.y = y;
      });
    }
    const unitOf = new Map();
    for (const unit of drawn) for (const node of unit.nodes) unitOf.set(node.node, unit);
    // Edges between units: summed, as a share of the target unit's total |input|.
    const summed = new Map();
    for (const edge of edges) {
      const from = unitOf.get(edge.source);
      const to = unitOf.get(edge.target);
      if (!from || !to || from === to) continue;
      const key = from.key + "→" + to.key;
      if (!summed.has(key)) summed.set(key, { from, to, weight: 0 });
      summed.get(key).weight += edge.weight;
    }
    const lines = svgElement("g", { class: "sg-edges" });
    for (const link of summed.values()) {
      const input = link.to.nodes.reduce((sum, node) => sum + (totalInput.get(node.node) || 0), 0) || 1;
      link.share = link.weight / input;
      const strength = Math.min(1, Math.abs(link.share));
      const line = svgElement("line", {
        x1: link.from.x + boxWidth / 2, y1: link.from.y, x2: link.to.x + boxWidth / 2, y2: link.to.y + boxHeight,
        class: "sg-edge " + (link.weight >= 0 ? "positive" : "negative"), "stroke-width": (0.8 + 5 * strength).toFixed(2),
        "data-from": link.from.key, "data-to": link.to.key, "data-share": link.share.toFixed(4),
      });
      const title = svgElement("title", {});
      title.textContent = `${link.from.title} → ${link.to.title}: ${percent(link.share)} of its input (weight ${link.weight.toPrecision(3)})`;
      line.append(title);
      lines.append(line);
      // The share written at the edge's middle, so the summed edge reads without hovering.
      const label = svgElement("text", { x: (link.from.x + link.to.x) / 2 + boxWidth / 2 + 3,
        y: (link.from.y + link.to.y + boxHeight) / 2, class: "sg-share" });
      label.textContent = percent(link.share);
      lines.append(label);
    }
    subgraph.append(lines);
    for (const unit of drawn) {
      const box = svgElement("g", { class: "sg-unit" + (unit.group ? " supernode" : ""), "data-key": unit.key });
      box.append(svgElement("rect", { x: unit.x, y: unit.y, width: boxWidth, height: boxHeight, rx: 5 }));
      const title = svgElement("text", { x: unit.x + 6, y: unit.y + 16, class: "sg-title" });
      title.textContent = unit.title.length > 24 ? unit.title.slice(0, 23) + "…" : unit.title;
      const caption = svgElement("text", { x: unit.x + 6, y: unit.y + 31, class: "sg-caption" });
      caption.textContent = unit.caption;
      const tooltip = svgElement("title", {});
      tooltip.textContent = unit.nodes.map((node) => node.name + (node.label ? ": " + node.label : "")).join("\n");
      box.append(title, caption, tooltip);
      box.addEventListener("click", () => select(unit.nodes[0].node));
      subgraph.append(box);
    }
    showScores();
  }

  let scoreRequest = 0;
  async function showScores() {
    const request = ++scoreRequest;
    const members = [...new Set([...state.pinned, ...state.groups.flatMap((group) => group.nodes)])];
    if (!members.length) { scoresLine.textContent = "Pin nodes to draw them here, bottom to top; groups are drawn as one box, their edges summed."; return; }
    const body = await (await fetch(`${src}/scores?pinned=${members.join(",")}`)).json();
    if (request !== scoreRequest) return;
    scoresLine.textContent = `Subgraph of ${members.length} nodes: replacement score ${body.replacement_score.toFixed(3)}, completeness ${body.completeness_score.toFixed(3)} (as Neuronpedia scores a pinned set).`;
  }

  const pinnedList = panes.querySelector("ul.pinned");
  function showPinned() {
    pinnedList.replaceChildren();
    for (const id of state.pinned) {
      const node = byId.get(id);
      const item = element("li", null, "pinned-node");
      item.dataset.node = id;
      const check = element("input");
      check.type = "checkbox";
      check.checked = state.checked.has(id);
      check.addEventListener("change", () => { if (check.checked) state.checked.add(id); else state.checked.delete(id); });
      const name = element("span", node.name + (node.label ? ": " + node.label : ""), "name");
      name.addEventListener("click", () => select(id));
      item.append(check, name, button("unpin", "unpin", () => togglePin(id)));
      pinnedList.append(item);
    }
  }

  const groupsList = panes.querySelector("ul.groups");
  function showGroups() {
    groupsList.replaceChildren();
    for (const group of state.groups) {
      const item = element("li", null, "group");
      const name = element("input");
      name.value = group.name;
      name.maxLength = 80;
      name.name = "group-name";
      item.append(name, element("span", ` ${group.nodes.length} nodes `, "meta"),
        button("rename", "rename", () => renameGroup(group.name, name.value.trim())),
        button("ungroup", "ungroup", () => saveGroup(group.name, [])));
      groupsList.append(item);
    }
  }

  async function saveGroup(name, nodes) {
    try {
      const body = await postJson(src + "/groups", { name, nodes });
      state.groups = body.groups;
      for (const id of nodes) state.pinned.add(id);
      if (nodes.length) await savePins();
      status.textContent = nodes.length ? "saved group " + name : "ungrouped " + name;
      refresh();
    } catch (error) { status.textContent = error.message; }
  }

  async function renameGroup(name, newName) {
    if (!newName || newName === name) return;
    try {
      state.groups = (await postJson(src + "/groups/rename", { name, new_name: newName })).groups;
      status.textContent = `renamed ${name} to ${newName}`;
      refresh();
    } catch (error) { status.textContent = error.message; }
  }

  async function savePins() {
    try { await postJson(src + "/pins", { nodes: [...state.pinned] }); } catch (error) { status.textContent = error.message; }
  }

  panes.querySelector("form.group").addEventListener("submit", (event) => {
    event.preventDefault();
    const name = event.target.name.value.trim();
    const members = [...state.checked].filter((id) => state.pinned.has(id));
    if (!name || !members.length) { status.textContent = "check pinned nodes and name them first"; return; }
    state.checked.clear();
    saveGroup(name, members);
  });

  const suggestions = panes.querySelector("ul.suggestions");
  panes.querySelector("button.suggest").addEventListener("click", async () => {
    const body = await (await fetch(src + "/suggestions")).json();
    suggestions.replaceChildren();
    if (!body.suggestions.length) suggestions.append(element("li", "no alike nodes found", "meta"));
    for (const group of body.suggestions) {
      const item = element("li", `${group.name} (${group.nodes.length} nodes, similarity ${group.similarity.toFixed(2)}) `, "suggestion");
      item.append(button("accept", "accept", () => { saveGroup(group.name, group.nodes); item.remove(); }));
      suggestions.append(item);
    }
  });

  // ---- State changes ----------------------------------------------------------------------------------------
  function refresh() {
    draw();
    showConnections();
    showPinned();
    showGroups();
    drawSubgraph();
    writeView();
  }

  function select(id) {
    state.clicked = id;
    refresh();
    showDetail();
  }

  function togglePin(id) {
    if (state.pinned.has(id)) { state.pinned.delete(id); state.checked.delete(id); } else state.pinned.add(id);
    refresh();
    savePins();
  }

  controls.addEventListener("input", () => {
    controls.nodes_shown.value = parseFloat(controls.nodes.value).toFixed(2);
    controls.density_shown.value = parseFloat(controls.density.value).toFixed(2);
    draw();
    writeView();
  });
  controls.addEventListener("submit", (event) => event.preventDefault());
  window.addEventListener("resize", () => { layout(); draw(); drawSubgraph(); });

  controls.nodes_shown.value = parseFloat(controls.nodes.value).toFixed(2);
  controls.density_shown.value = parseFloat(controls.density.value).toFixed(2);
  layout();
  refresh();
  showDetail();
  // Where a node is drawn, in canvas pixels: for the browser tests and the redraw benchmark to click it.
  window.graphPage = { position: (id) => ({ x: byId.get(id).x, y: byId.get(id).y }), shown: (id) => visibleNodes.includes(byId.get(id)) };
  panes.dataset.ready = "true";
});
