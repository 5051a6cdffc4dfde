"""`interp serve` as a real server process: pages, JSON API, 404s, the token, escaping of hostile corpus and
LLM text; and a real browser (Debian's chromium, driven by Playwright) on the feature page and search."""

import json
import os
import shutil
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import duckdb
import pytest
from markupsafe import escape

from agent.labeling.config import LabelConfig
from agent.labeling.pipeline import run_label
from tests.agent.test_label import scripted_factory
from tests.scripted import ScriptedChat, is_judge, yes
from tools.testing.servers import free_port, running, stub_server
from tools.testing.tiny import cache_tiny_catalog, save_tiny_model, sentences
from tools.text import visible

HOSTILE = '<script>alert("pwned")</script> it\'s "quoted" \x1b[31mred\x07 & <b>bold</b>'
EXPLANATION = 'words about "animals" <img src=x onerror=alert(1)> and cats'
SCREENSHOT_ENV = "INTERP_SCREENSHOT"
"""Where the browser test saves its screenshot of the feature page (the README's, docs/feature-page.png, is
a feature of the embedded defaults: `python benchmarks/screenshot.py`)."""


@pytest.fixture(scope="module")
def hostile_catalog(tmp_path_factory) -> Path:
    """A tiny byte-level model cached over a corpus full of markup and control characters, labeled by an LLM
    whose explanations are markup too."""
    folder = tmp_path_factory.mktemp("web")
    corpus = folder / "corpus"
    corpus.mkdir()
    lines = [line if i % 3 else f"{line} {HOSTILE}" for i, line in enumerate(sentences(300))]
    (corpus / "a.txt").write_text("\n".join(lines))
    model = save_tiny_model("gpt2", folder / "tiny-bpe", tokenizer="bpe")
    catalog = cache_tiny_catalog(folder / "web.duckdb", model, corpus / "*.txt", folder / "sae")
    chat = ScriptedChat(lambda prompt: yes(prompt) if is_judge(prompt) else f"Explanation: {EXPLANATION}")
    config = LabelConfig(llm="openai:scripted", scorers="detection,embedding", limit=4, device="cpu")
    run_label(config, "mlp.1", catalog, progress=False, llm_factory=scripted_factory(chat))
    return catalog


@pytest.fixture(scope="module")
def server(hostile_catalog):
    """The web server, its Ask box answered by the loopback OpenAI-compatible stub (a real process) through the
    fixed graph, which runs the experiments itself."""
    port = free_port()
    with stub_server() as llm_url:
        command = [sys.executable, "-m", "agent.cli", "serve", "--catalog", str(hostile_catalog), "--port", str(port),
                   "--llm", "openai:stub", "--base-url", llm_url, "--ask-graph", "fixed", "--device", "cpu"]
        with running(command, f"http://127.0.0.1:{port}/api/sets"):
            yield f"http://127.0.0.1:{port}"


def events(url: str) -> list[tuple[str, dict]]:
    """A server-sent event stream, read to its end."""
    out, event = [], None
    with urllib.request.urlopen(url, timeout=120) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for raw in response:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[len("event: "):]
            elif line.startswith("data: "):
                out.append((event, json.loads(line[len("data: "):])))
    return out


@pytest.fixture(scope="module")
def scored(server) -> int:
    """A feature whose explanation has scores (some of the four may fail to score on so few examples)."""
    page = json.loads(get(server + "/api/sets/mlp.1?metric=detection%20auroc&sort=score&descending=true")[2])
    return page["features"][0]["feature"]


def get(url: str, headers: dict | None = None) -> tuple[int, dict, str]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            return response.status, dict(response.headers), response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read().decode()


def test_pages_and_api_show_the_catalog(server, scored):
    status, headers, home = get(server + "/")
    assert status == 200 and "mlp.1-" in home and "script-src 'self'" in headers["content-security-policy"]
    sets = json.loads(get(server + "/api/sets")[2])
    mlp = next(s for s in sets if s["hook"] == "mlp.1")
    assert mlp["labeled"] == 4 and mlp["explainers"] == ["oneshot"]
    listing = json.loads(get(server + f"/api/sets/{mlp['feature_set_id']}?sort=max_act&descending=true")[2])
    assert listing["total"] == mlp["n_features"] and len(listing["features"]) == min(100, mlp["n_features"])
    maxes = [row["max_act"] for row in listing["features"]]
    assert maxes == sorted(maxes, reverse=True)
    distributions = listing["distributions"]
    assert {"embedding auroc", "detection auroc"} <= set(distributions)
    assert sum(distributions["detection auroc"]["counts"]) == distributions["detection auroc"]["n"] >= 1
    labeled = json.loads(get(server + "/api/sets/mlp.1?labeled_only=true&text=animals")[2])
    assert labeled["total"] == 4 and all("animals" in row["text"] for row in labeled["features"])
    by_score = json.loads(get(server + "/api/sets/mlp.1?metric=detection%20auroc&sort=score&descending=true")[2])
    scores = [row["score"] for row in by_score["features"] if row["score"] is not None]
    assert len(scores) == distributions["detection auroc"]["n"] and scores == sorted(scores, reverse=True)
    assert by_score["features"][0]["score"] is not None  # scored features first, unscored after
    feature = json.loads(get(server + f"/api/sets/mlp.1/features/{scored}")[2])
    assert {e["bucket"] for e in feature["examples"]} == {"top", "quantile", "random"}
    assert feature["explanations"][0]["scores"] and feature["explanations"][0]["text"] == EXPLANATION
    status, _, page = get(server + f"/sets/mlp.1/features/{scored}")
    assert status == 200 and 'class="tok a10"' in page and "detection" in page
    assert get(server + "/api/openapi.json")[0] == 200


def test_hostile_text_is_data_not_markup(server, scored):
    for path in (f"/sets/mlp.1/features/{scored}", "/sets/mlp.1?labeled_only=true", "/search?q=animals"):
        status, _, page = get(server + path)
        assert status == 200, path
        assert "<script>alert" not in page and "<img src=x" not in page and "<b>bold" not in page, path
        assert "\x1b" not in page and "\x07" not in page, path
    page = get(server + f"/sets/mlp.1/features/{scored}")[2]
    assert "&lt;img src=x onerror=alert(1)&gt;" in page
    shown = json.loads(get(server + f"/api/sets/mlp.1/features/{scored}")[2])
    hostile = {t["text"] for e in shown["examples"] for t in e["tokens"] if set(t["text"]) & set("<>\"'&\x1b\x07")}
    assert hostile  # the corpus's markup reached this feature's examples...
    for token in hostile:  # ...and each such token is on the page as text, escaped and made visible
        assert f">{escape(visible(token))}</span>" in page, token


def test_try_it_runs_the_subject_model_in_the_server(server, scored):
    from urllib.parse import quote

    shown = json.loads(get(server + f"/api/sets/mlp.1/features/{scored}/model?text={quote('the cat sat')}")[2])
    assert len(shown["promotes"]) == len(shown["suppresses"]) == 10
    assert shown["promotes"][0]["change"] >= shown["promotes"][-1]["change"] > shown["suppresses"][0]["change"]
    assert "".join(t["text"] for t in shown["activations"]) == "the cat sat" and shown["decoder_neighbours"] == []
    latent = json.loads(get(server + "/api/sets/resid_post.1/features/5/model")[2])
    assert len(latent["decoder_neighbours"]) == 8 and latent["activations"] == []
    cosines = [n["cosine"] for n in latent["decoder_neighbours"]]
    assert cosines == sorted(cosines, reverse=True) and 5 not in [n["feature"] for n in latent["decoder_neighbours"]]
    status, _, page = get(server + f"/sets/mlp.1/features/{scored}/model?text={quote(HOSTILE)}")
    assert status == 200 and "<script>alert" not in page and "\x1b" not in page and 'class="tok' in page
    assert get(server + "/api/sets/mlp.1/features/99999/model")[0] == 404


def test_asking_streams_each_tool_call_and_the_answer_and_resumes(server, scored, hostile_catalog):
    from urllib.parse import quote

    question = quote('Does it fire on "the cat sat"?')
    first = events(server + f"/sets/mlp.1/features/{scored}/ask/stream?q={question}")
    names = [name for name, _ in first]
    assert names[0] == "session" and names[-1] == "done" and "answer" in names and "failure" not in names, first
    tool = next(data for name, data in first if name == "tool")
    assert tool["tool"] == "activations_on" and tool["arguments"]["texts"] == ["the cat sat"]
    assert names.index("tool") < names.index("result") < names.index("answer")
    session = first[0][1]["session"]
    again = events(server + f"/sets/mlp.1/features/{scored}/ask/stream?q={quote('What does it promote?')}"
                   f"&session={session}")
    assert again[0] == ("session", {"session": session, "feature": scored}) and again[-1][0] == "done"
    page = get(server + f"/sets/mlp.1/features/{scored}")[2]
    assert f"?session={session}" in page and "2 questions" in page  # listed, resumable
    with duckdb.connect(str(hostile_catalog), read_only=True) as con:
        asked = con.execute("SELECT count(*) FROM runs WHERE kind = 'ask' AND status = 'complete'").fetchall()
    assert asked[0][0] >= 2
    failed = events(server + f"/sets/mlp.1/features/{scored}/ask/stream?q=x&session=nosuch")
    assert failed[0][0] == "failure" and "no ask session 'nosuch'" in failed[0][1]["error"]


def test_bad_ids_are_404_pages_not_tracebacks(server):
    status, _, page = get(server + "/sets/no-such-set")
    assert status == 404 and "no feature set &#39;no-such-set&#39;" in page and "Traceback" not in page
    status, _, page = get(server + "/sets/mlp.1/features/99999")
    assert status == 404 and "is not in feature set" in page
    status, _, body = get(server + "/api/sets/mlp.1/features/99999")
    assert status == 404 and "is not in feature set" in json.loads(body)["error"]
    assert get(server + "/api/sets/mlp.1?page=0")[0] == 422
    status, _, body = get(server + "/api/sets/mlp.1?metric=nope&sort=score")
    assert status == 400 and "no metric 'nope'" in json.loads(body)["error"]


def test_another_host_needs_a_token_and_every_request_carries_it(hostile_catalog, capsys):
    from agent.cli import main

    assert main(["serve", "--host", "0.0.0.0", "--catalog", str(hostile_catalog)]) == 2
    assert "--host 0.0.0.0 lets other machines in; pass --token" in capsys.readouterr().err
    port = free_port()
    command = [sys.executable, "-m", "agent.cli", "serve", "--catalog", str(hostile_catalog), "--port", str(port),
               "--token", "s3cret"]
    with running(command, f"http://127.0.0.1:{port}/api/sets"):
        base = f"http://127.0.0.1:{port}"
        assert get(base + "/api/sets")[0] == 401
        assert get(base + "/api/sets?token=wrong")[0] == 401
        status, headers, _ = get(base + "/?token=s3cret")
        assert status == 200 and "interp_token=s3cret" in headers["set-cookie"]
        assert get(base + "/api/sets", {"Cookie": "interp_token=s3cret"})[0] == 200
        assert get(base + "/api/sets", {"Authorization": "Bearer s3cret"})[0] == 200


def chromium() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(chromium() is None, reason="needs Debian's chromium (apt-get install -y chromium; .ci/run does)")
def test_a_real_browser_reads_the_feature_page_and_searches(server, scored, tmp_path):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium(), args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1300, "height": 1000})
        errors: list[str] = []
        page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
        page.goto(server + f"/sets/mlp.1/features/{scored}")
        shaded = page.locator(".tokens .tok.a10")
        assert shaded.count() >= 1
        assert float(shaded.first.get_attribute("title")) > 0  # the value on hover
        assert page.locator("table.scores td.score").count() >= 2
        assert page.locator("p.text").first.inner_text() == EXPLANATION  # shown as text, not run
        assert page.evaluate("() => document.querySelectorAll('img').length") == 0
        screenshot = Path(os.environ.get(SCREENSHOT_ENV) or tmp_path / "feature-page.png")
        page.screenshot(path=str(screenshot), full_page=False)
        assert screenshot.stat().st_size > 10_000
        page.fill("header input[type=search]", "animals")
        page.click("header button[type=submit]")
        page.wait_for_url("**/search?q=animals")
        assert page.locator("table.results tbody tr").count() >= 4
        page.goto(server + f"/sets/mlp.1/features/{scored}")
        page.fill("form.ask input[name=q]", 'Does it fire on "a cat"?')
        page.click("form.ask button")
        page.wait_for_selector(".ask-log .answer", timeout=60_000)
        assert "activations_on" in page.locator(".ask-log .tool").first.inner_text()
        page.goto(server + "/api/docs")
        page.wait_for_selector(".swagger-ui .opblock", timeout=30_000)  # Swagger UI from local files
        browser.close()
    assert not [e for e in errors if "Content Security Policy" in e], errors


def test_audits_and_evals_render_from_their_catalog_rows(tiny_models, text_corpus, tmp_path):
    from agent.audit.run import run_audit
    from evals.compare import run_compare
    from tests.agent.test_audit import CONFIG, PARIS_LATENT, concepts_file, make_audited_catalog

    catalog = make_audited_catalog(tmp_path, tiny_models, text_corpus)
    result = run_audit(CONFIG, concepts_file(tmp_path), "resid_pre.0", catalog, tmp_path / "report")
    chat = ScriptedChat(lambda prompt: yes(prompt) if is_judge(prompt) else "Explanation: the city of paris")
    config = LabelConfig(llm="openai:scripted", scorers="embedding", features=f"0,{PARIS_LATENT}", device="cpu")
    run_label(config, "resid_pre.0", catalog, progress=False, llm_factory=scripted_factory(chat))
    run_compare(catalog, "resid_pre.0", "oneshot", "token-stats", ["embedding"])
    port = free_port()
    command = [sys.executable, "-m", "agent.cli", "serve", "--catalog", str(catalog), "--port", str(port)]
    with running(command, f"http://127.0.0.1:{port}/api/sets"):
        base = f"http://127.0.0.1:{port}"
        (listed,) = json.loads(get(base + "/api/audits")[2])
        assert listed["run_id"] == result.run_id and "Paris: represented" in listed["verdicts"]
        audit = json.loads(get(base + f"/api/audits/{result.run_id}")[2])
        paris = next(c for c in audit["concepts"] if c["concept"] == "Paris")
        assert paris["candidates"][0]["feature"] == PARIS_LATENT and paris["effects"]["bars"]
        status, _, page = get(base + f"/audits/{result.run_id}")
        assert status == 200 and f'/features/{PARIS_LATENT}">{PARIS_LATENT}</a>' in page and "<svg" in page
        assert get(base + "/audits/no-such-run")[0] == 404
        (table,) = json.loads(get(base + "/api/evals")[2])
        assert table["eval"] == "compare" and {row["metric"] for row in table["rows"]} >= {"embedding auroc"}
        status, _, page = get(base + "/evals")
        assert status == 200 and "embedding auroc" in page


def test_pages_keep_working_while_a_labeling_run_writes(tiny_models, text_corpus, tmp_path):
    """The server opens the catalog read-only per request while a label run writes it. The run's LLM answers
    the first 20 explanations at once and holds the rest until the test has read, through the server, that
    those 20 are in: so pages must be served mid-run, however fast or slow this machine is."""
    import threading

    catalog = cache_tiny_catalog(tmp_path / "c.duckdb", tiny_models["gpt2"], text_corpus, tmp_path / "sae")
    first, total = 20, 40
    go, explained, lock = threading.Event(), [0], threading.Lock()

    def gated(prompt: str) -> str:
        if is_judge(prompt):
            return yes(prompt)
        with lock:
            explained[0] += 1
            held = explained[0] > first
        if held:
            assert go.wait(300), "the test never let the held explanations go"
        return "Explanation: words about animals"

    config = LabelConfig(llm="openai:scripted", scorers="detection", limit=total, concurrency=4, device="cpu")
    port = free_port()
    command = [sys.executable, "-m", "agent.cli", "serve", "--catalog", str(catalog), "--port", str(port)]

    def labeled() -> int:
        status, _, body = get(f"http://127.0.0.1:{port}/api/sets")
        assert status == 200, body
        return next(s["labeled"] for s in json.loads(body) if s["hook"] == "mlp.1")

    with running(command, f"http://127.0.0.1:{port}/api/sets"):
        labeling = threading.Thread(target=run_label, args=(config, "mlp.1", catalog), kwargs={
            "progress": False, "llm_factory": scripted_factory(ScriptedChat(gated))})
        labeling.start()
        seen = [labeled()]
        try:
            deadline = time.monotonic() + 300  # a stated bound: 20 features of a tiny model take seconds
            while seen[-1] < first:
                assert labeling.is_alive(), f"the run ended before the pages saw {first} features labeled: {seen}"
                assert time.monotonic() < deadline, f"the pages saw {seen}, not {first} labeled, within 300 s"
                seen.append(labeled())
                time.sleep(0.05)  # pacing only: the loop ends on what the pages show, not on a count of polls
        finally:
            go.set()
            labeling.join()
        final = labeled()
    assert seen == sorted(seen) and seen[-1] == first and final == total, (seen, final)
