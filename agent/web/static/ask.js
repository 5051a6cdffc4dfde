// The feature page's Ask box: a question streamed over server-sent events, each tool call and the answer
// shown as it arrives. Everything received is set as text (textContent), never parsed as markup.
document.addEventListener("DOMContentLoaded", () => {
  const form = document.querySelector("form.ask");
  if (!form) return;
  const log = document.querySelector(".ask-log");
  const add = (kind, text) => {
    const line = document.createElement("div");
    line.className = kind;
    line.textContent = text;
    log.appendChild(line);
    return line;
  };
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const button = form.querySelector("button");
    const params = new URLSearchParams(new FormData(form));
    if (!params.get("q").trim()) return;
    button.disabled = true;
    add("question", "Q: " + params.get("q"));
    const source = new EventSource(form.dataset.stream + "?" + params.toString());
    const data = (e) => JSON.parse(e.data);
    source.addEventListener("session", (e) => {
      form.querySelector("[name=session]").value = data(e).session;
      add("meta", "session " + data(e).session);
    });
    source.addEventListener("tool", (e) => add("tool", "→ " + data(e).tool + "(" + JSON.stringify(data(e).arguments) + ")"));
    source.addEventListener("result", (e) => add(data(e).ok ? "result" : "result failed", data(e).result));
    source.addEventListener("answer", (e) => add("answer", data(e).answer));
    source.addEventListener("failure", (e) => add("error", data(e).error));
    source.addEventListener("done", () => { source.close(); button.disabled = false; });
    source.onerror = () => { source.close(); button.disabled = false; };
  });
});
