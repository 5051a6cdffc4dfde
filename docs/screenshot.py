"""Remake docs/feature-page.png: a real feature page of the embedded defaults, served by `interp serve`; with
--graph, docs/graph-page.png: the page of an attribution graph (`interp trace`).

    python docs/screenshot.py --catalog interp.duckdb --feature-set mlp.6 --feature 311
    python docs/screenshot.py --catalog interp.duckdb --graph latest [--view "?clicked=...&pinned=..."]

Run it where the README's main job ran (and, for explanations on the page, `interp label mlp.6 --features
311`). It drives Debian's chromium through Playwright, as the browser test does.
"""

import argparse
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

OUT = Path(__file__).parent / "feature-page.png"
GRAPH_OUT = Path(__file__).parent / "graph-page.png"
START_SECONDS = 60


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def wait_until_serving(url: str, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + START_SECONDS
    while time.monotonic() < deadline:
        if server.poll() is not None:
            sys.exit(f"interp serve exited with {server.returncode}")
        try:
            urllib.request.urlopen(url, timeout=2).close()
            return
        except OSError:
            time.sleep(0.2)
    sys.exit(f"interp serve did not answer {url} within {START_SECONDS} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--catalog", default="interp.duckdb")
    parser.add_argument("--feature-set", default="mlp.6")
    parser.add_argument("--feature", type=int, default=311)
    parser.add_argument("--graph", help="a graph id (or 'latest'): shoot its page instead, into docs/graph-page.png")
    parser.add_argument("--view", default="", help="the graph page's query string (a view copied from its URL: "
                                                    "clicked node, pins, groups, thresholds)")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    args.out = args.out or (GRAPH_OUT if args.graph else OUT)
    browser_path = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser_path is None:
        sys.exit("needs Debian's chromium (apt-get install -y chromium)")
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "agent.cli", "serve", "--catalog", args.catalog, "--port",
                               str(port)], stdout=subprocess.DEVNULL)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until_serving(base + "/", server)
        from playwright.sync_api import sync_playwright

        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(executable_path=browser_path, args=["--no-sandbox"])
            if args.graph:
                graph_id = json.loads(urllib.request.urlopen(f"{base}/api/graphs/{args.graph}").read())["graph"]
                page = browser.new_page(viewport={"width": 1700, "height": 1250})
                page.goto(f"{base}/graphs/{graph_id['graph_id']}{args.view}")
                page.wait_for_selector(".graph-panes[data-ready=true]")
                if not args.view:  # the top logit is clicked on load: open its strongest input
                    page.click("ul.inputs li.connection >> nth=0")
                page.wait_for_timeout(1500)  # the feature detail and the subgraph's scores arrive
            else:
                page = browser.new_page(viewport={"width": 1300, "height": 1700})  # down to the shaded examples
                page.goto(f"{base}/sets/{args.feature_set}/features/{args.feature}")
            page.screenshot(path=str(args.out), full_page=False)
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
