"""The graph page of `interp serve`: its API, its one write (a named group of nodes), and a real browser
(Debian's chromium, driven by Playwright) drawing a traced graph, filtering it, and saving a group."""

import json
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.agent.test_web import chromium, get
from tests.tracing import PROMPT, transcoder_catalog
from tools.testing.servers import free_port, running


@pytest.fixture(scope="module")
def traced(tmp_path_factory, tiny_models) -> tuple[Path, str]:
    """A catalog with one graph of a tiny Llama through random transcoders, layer 1 cached and labeled."""
    from agent.cli import main

    catalog, transcoders = transcoder_catalog(tiny_models["llama"], tmp_path_factory.mktemp("graph"), 1)
    common = ["--model", str(tiny_models["llama"]), "--device", "cpu", "--catalog", str(catalog)]
    assert main(["trace", PROMPT, "--transcoders", str(transcoders), "--check", "3", "--node-threshold", "1.0",
                 "--edge-threshold", "1.0", "--no-progress", *common]) == 0
    return catalog, json.loads(get_graph_id(catalog))


def get_graph_id(catalog: Path) -> str:
    import duckdb

    with duckdb.connect(str(catalog), read_only=True) as con:
        return json.dumps(con.execute("SELECT graph_id FROM graphs").fetchone()[0])


@pytest.fixture(scope="module")
def server(traced):
    catalog, _ = traced
    port = free_port()
    command = [sys.executable, "-m", "agent.cli", "serve", "--catalog", str(catalog), "--port", str(port),
               "--device", "cpu"]
    with running(command, f"http://127.0.0.1:{port}/api/graphs"):
        yield f"http://127.0.0.1:{port}"


def post(url: str, body: dict, headers: dict) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def test_the_graph_api_and_its_one_write(server, traced):
    _, graph_id = traced
    status, _, body = get(server + "/api/graphs")
    assert status == 200 and [g["graph_id"] for g in json.loads(body)] == [graph_id]
    status, _, body = get(server + f"/api/graphs/{graph_id}")
    shown = json.loads(body)
    kinds = {node["kind"] for node in shown["nodes"]}
    assert status == 200 and kinds == {"feature", "error", "token", "logit"} and shown["edges"]
    labeled = [n for n in shown["nodes"] if n["kind"] == "feature" and n["layer"] == 1 and n["label"]]
    assert labeled and all(n["href"].startswith("/sets/mlp_in.1-transcoder-") for n in labeled)
    assert get(server + "/graphs/nope")[0] == 404 and get(server + "/api/graphs/nope")[0] == 404
    members = [n["node"] for n in shown["nodes"][:3]]
    url = server + f"/api/graphs/{graph_id}/groups"
    # Only JSON from this server's own pages writes: a form or another origin is refused.
    assert post(url, {"name": "x", "nodes": members}, {"Content-Type": "text/plain"})[0] in (400, 422)
    assert post(url, {"name": "x", "nodes": members}, {"Content-Type": "application/json",
                                                       "Origin": "https://evil.example"})[0] == 400
    assert post(url, {"name": "x", "nodes": [10**6]}, {"Content-Type": "application/json"})[0] == 400
    status, body = post(url, {"name": "subject", "nodes": members}, {"Content-Type": "application/json"})
    assert status == 200 and body["groups"] == [{"name": "subject", "nodes": sorted(members)}]
    status, body = post(url, {"name": "subject", "nodes": []}, {"Content-Type": "application/json"})
    assert status == 200 and body["groups"] == []  # no members deletes it


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium; .ci/run does)")
def test_a_real_browser_draws_filters_and_groups_a_graph(server, traced):
    from playwright.sync_api import sync_playwright

    _, graph_id = traced
    shown = json.loads(get(server + f"/api/graphs/{graph_id}")[2])
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1500, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(server + "/graphs")
        page.click(f"a[href='/graphs/{graph_id}']")
        page.wait_for_selector("svg.graph .node")
        assert page.locator("svg.graph .node").count() == len(shown["nodes"])
        assert page.locator("svg.graph line.edge").count() == len(shown["edges"])
        page.locator("input[name=edges]").fill("1")
        page.locator("input[name=edges]").dispatch_event("input")
        assert page.locator("svg.graph line.edge:not(.hidden)").count() == len(shown["edges"])
        assert page.locator("svg.graph text.token-label").count() == len(shown["graph"]["tokens"])
        # Hovering a labeled feature shows its label; tightening the node threshold hides nodes.
        node = next(n for n in shown["nodes"] if n["kind"] == "feature" and n["layer"] == 1 and n["label"])
        page.hover(f"svg.graph .node[data-node='{node['node']}']")
        assert node["label"] in page.locator(".hovered").inner_text()
        visible = page.locator("svg.graph .node:not(.hidden)").count()
        page.locator("input[name=nodes]").fill("0.05")
        page.locator("input[name=nodes]").dispatch_event("input")
        assert page.locator("svg.graph .node:not(.hidden)").count() < visible
        assert "nodes" in page.locator(".counts").inner_text()
        page.locator("input[name=nodes]").fill("1")
        page.locator("input[name=nodes]").dispatch_event("input")
        # Select, pin, name and save a group; it is in the catalog.
        page.click(f"svg.graph .node[data-node='{node['node']}']")
        assert page.locator(".selected a.feature-link").get_attribute("href") == node["href"]
        page.click(".selected button.pin")
        assert page.locator("ul.pinned li").count() == 1
        page.fill("form.group input[name=name]", "a cat")
        page.click("form.group button")
        page.wait_for_selector("ul.groups li.group")
        assert "saved group a cat" in page.locator(".status").inner_text()
        saved = json.loads(get(server + f"/api/graphs/{graph_id}")[2])["groups"]
        assert saved == [{"name": "a cat", "nodes": [node["node"]]}]
        # Suggested groups: listed on request, saved only when accepted.
        suggested = json.loads(get(server + f"/api/graphs/{graph_id}/suggestions")[2])["suggestions"]
        assert suggested and all(len(group["nodes"]) >= 2 for group in suggested)
        page.click("button.suggest")
        page.wait_for_selector("ul.suggestions li.suggestion")
        assert page.locator("ul.suggestions li.suggestion").count() == len(suggested)
        page.click("ul.suggestions li.suggestion button")
        page.wait_for_selector("ul.groups li.group >> nth=1")
        saved = json.loads(get(server + f"/api/graphs/{graph_id}")[2])["groups"]
        assert {"name": suggested[0]["name"], "nodes": sorted(suggested[0]["nodes"])} in saved
        page.click(".selected a.feature-link")
        page.wait_for_url(f"**{node['href']}")
        browser.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors
