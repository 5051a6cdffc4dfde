"""The graph page in Chromium: how long a threshold slider move takes to redraw the link graph, against drawing
every catalog edge at once (what the page did before it drew one node's edges), side by side in one run; and
how long the page takes to load and become usable.

    python benchmarks/graph_page.py --catalog interp.duckdb --graph ID [--moves 40]

The graph is any cataloged one: docs/guides/trace.md quotes the defaults' Texas graph and the 17-token prompt
traced with `--max-features 0`. A real `interp serve` process serves it and Debian's chromium draws it
(Playwright). A redraw is timed from the slider's input event to the next animation frame, so it includes the
canvas drawing; the baseline draws every edge with the same positions and colours on the same canvas, timed the
same way. The target (issue 43) is a redraw within 100 ms.
"""

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.testing.servers import free_port, running  # noqa: E402

SLIDER_MOVES = """async (values) => {
  const input = document.querySelector("input[name=nodes]");
  const times = [];
  for (const value of values) {
    const started = performance.now();
    input.value = value;
    input.dispatchEvent(new Event("input", { bubbles: true }));
    await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
    times.push(performance.now() - started);
  }
  return times;
}"""

EVERY_EDGE = """async (moves) => {
  const canvas = document.querySelector("canvas.graph");
  const context = canvas.getContext("2d");
  const data = await (await fetch(document.querySelector(".graph-panes").dataset.src)).json();
  const position = new Map(data.nodes.map((node) => [node.node, window.graphPage.position(node.node)]));
  const heaviest = Math.max(...data.edges.map((edge) => Math.abs(edge.weight)));
  const times = [];
  for (let move = 0; move < moves; move += 1) {
    const started = performance.now();
    context.clearRect(0, 0, canvas.width, canvas.height);
    for (const edge of data.edges) {
      const source = position.get(edge.source);
      const target = position.get(edge.target);
      if (!source || !target) continue;
      context.strokeStyle = edge.weight >= 0 ? "rgba(36, 113, 163, 0.5)" : "rgba(192, 57, 43, 0.5)";
      context.lineWidth = 0.4 + (3 * Math.abs(edge.weight)) / heaviest;
      context.beginPath();
      context.moveTo(source.x, source.y);
      context.lineTo(target.x, target.y);
      context.stroke();
    }
    await new Promise((done) => requestAnimationFrame(() => setTimeout(done, 0)));
    times.push(performance.now() - started);
  }
  return times;
}"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", type=Path, required=True)
    parser.add_argument("--graph", required=True, help="a graph id (or unique prefix) in the catalog")
    parser.add_argument("--moves", type=int, default=40, help="slider moves timed (the median is printed)")
    args = parser.parse_args()
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        sys.exit("needs Debian's chromium: apt-get install -y chromium")
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as folder:
        catalog = Path(folder) / "catalog.duckdb"
        shutil.copy(args.catalog, catalog)  # the page saves pins: never into the caller's catalog
        port = free_port()
        server = f"http://127.0.0.1:{port}"
        command = [sys.executable, "-m", "agent.cli", "serve", "--catalog", str(catalog), "--port", str(port),
                   "--device", "cpu"]
        with running(command, server + "/api/graphs"), sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1600, "height": 1200})
            started = time.monotonic()
            page.goto(f"{server}/graphs/{args.graph}")
            page.wait_for_selector(".graph-panes[data-ready=true]", timeout=120_000)
            loaded = time.monotonic() - started
            counts = page.locator(".counts").inner_text()
            values = [f"{0.3 + 0.7 * (i % 20) / 19:.2f}" for i in range(args.moves)]
            ours = page.evaluate(SLIDER_MOVES, values)
            theirs = page.evaluate(EVERY_EDGE, args.moves)
            browser.close()
    ours_ms, theirs_ms = statistics.median(ours), statistics.median(theirs)
    print(f"graph {args.graph}: {counts}")
    print(f"page load to usable: {loaded:.2f} s (server, fetch, layout, first draw)")
    print(f"slider move, redraw (ours: the clicked node's edges): median {ours_ms:.1f} ms, max {max(ours):.1f} ms "
          f"over {len(ours)} moves")
    print(f"every edge drawn (before):                            median {theirs_ms:.1f} ms, max {max(theirs):.1f} ms")
    print(f"every edge / ours = {theirs_ms / ours_ms:.1f}x; target: a redraw within 100 ms "
          f"({'met' if ours_ms <= 100 else 'missed'})")


if __name__ == "__main__":
    main()
