"""The real LLM paths, slow: the embedded SmolLM2-135M-Instruct in-process, and a real OpenAI-compatible
server process (`transformers serve` on a local folder) through the `openai` client."""

import sys
from pathlib import Path

import duckdb
import pytest

from agent.cli import main
from tools.llm.local import embedded_llm_path
from tools.model.subject import load_subject_model
from tools.testing.servers import free_port, running
from tools.testing.tiny import cache_tiny_catalog

pytestmark = pytest.mark.slow


@pytest.fixture
def catalog(tmp_path, tiny_models, text_corpus) -> Path:
    return cache_tiny_catalog(tmp_path / "c.duckdb", tiny_models["gpt2"], text_corpus, tmp_path / "sae")


def scores_of(catalog: Path) -> list[tuple]:
    with duckdb.connect(str(catalog), read_only=True) as con:
        return con.execute("SELECT e.feature, s.scorer, s.metric, s.status, s.value, s.n, s.error FROM scores s "
                           "JOIN explanations e USING (explanation_id) ORDER BY ALL").fetchall()


def test_label_two_features_with_the_embedded_local_llm(catalog, capsys):
    assert main(["label", "resid_post.1", "--limit", "2", "--scorers", "simulation,detection,fuzzing,embedding",
                 "--catalog", str(catalog), "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "labeled 2, failed 0" in out
    with duckdb.connect(str(catalog), read_only=True) as con:
        explanations = con.execute("SELECT text, llm, prompt_tokens, completion_tokens FROM explanations").fetchall()
    assert len(explanations) == 2
    assert all(text and llm.startswith("local:smollm2-135m@") and p > 0 and c > 0 for text, llm, p, c in explanations)
    scores = scores_of(catalog)
    simulation = [s for s in scores if s[1] == "simulation"]
    assert len(simulation) == 2 and all(s[3] == "ok" and -1 <= s[4] <= 1 and s[5] > 0 for s in simulation)
    # The local backend judges with P(yes), so detection and fuzzing give a real AUROC.
    assert {(s[1], s[2]) for s in scores if s[3] == "ok"} >= {("detection", "auroc"), ("fuzzing", "auroc"),
                                                              ("embedding", "auroc")}


def test_label_through_transformers_serve_on_loopback(catalog, capsys):
    folder = load_subject_model(str(embedded_llm_path()), device="cpu").path
    port = free_port()
    serve = [str(Path(sys.executable).with_name("transformers")), "serve", "--host", "127.0.0.1", "--port", str(port),
             "--device", "cpu", folder]
    with running(serve, f"http://127.0.0.1:{port}/health", timeout=180):
        code = main(["label", "resid_post.1", "--llm", f"openai:{folder}", "--base-url",
                     f"http://127.0.0.1:{port}/v1", "--limit", "2", "--scorers", "detection",
                     "--score-active", "4", "--score-random", "4", "--catalog", str(catalog), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "labeled 2, failed 0" in out
    with duckdb.connect(str(catalog), read_only=True) as con:
        rows = con.execute("SELECT llm, prompt_tokens, completion_tokens FROM explanations").fetchall()
    assert all(llm == f"openai:{folder}@http://127.0.0.1:{port}/v1" and p > 0 and c > 0 for llm, p, c in rows)
    # Each detection either scored or failed with a recorded reason (a tiny model may not answer Yes/No).
    assert all(s[3] == "ok" or s[6] for s in scores_of(catalog))


def test_investigate_a_feature_with_the_embedded_local_llm(catalog, capsys):
    assert main(["investigate", "resid_post.1", "3", "--scorers", "embedding", "--catalog", str(catalog),
                 "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "[gather]" in out and "[revise]" in out and "steps logged" in out
    with duckdb.connect(str(catalog), read_only=True) as con:
        tools = [row[0] for row in con.execute("SELECT tool FROM experiments ORDER BY step").fetchall()]
        (status, llm), = con.execute("SELECT status, llm FROM explanations").fetchall()
    assert tools[:4] == ["top_examples", "token_stats", "logit_effect", "llm:hypothesis"]
    assert llm.startswith("local:smollm2-135m@") and status in ("ok", "failed")


def test_ask_one_question_with_the_embedded_local_llm(catalog, capsys):
    assert main(["ask", "resid_post.1", "3", "--question", "Does it fire on numbers?",
                 "--catalog", str(catalog), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    # The graph ran the LLM's sentences and ordinary corpus text for comparison, and cited both.
    assert '-> activations_on({"feature": 3, "texts": [' in out
    assert '-> top_examples({"feature": 3, "bucket": "random", "n": 8})' in out
    assert '- Sentences written to contain "numbers": peak' in out and "Measured:" in out
    with duckdb.connect(str(catalog), read_only=True) as con:
        tools = [row[0] for row in con.execute("SELECT tool FROM experiments ORDER BY step").fetchall()]
    assert tools == ["llm:texts", "activations_on", "top_examples", "llm:answer"]
