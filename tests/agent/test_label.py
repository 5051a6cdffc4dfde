"""`interp label` end to end on a tiny model's catalog, with a scripted LLM at the boundary."""

import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import duckdb
import pytest

from agent.cli import main
from agent.labeling.config import LabelConfig
from agent.labeling.pipeline import run_label
from tests.scripted import ScriptedChat, ScriptedSimulator, is_judge, yes
from tools.errors import InterpError
from tools.llm.interface import LLMError
from tools.testing.tiny import cache_tiny_catalog


@pytest.fixture
def catalog(tmp_path, tiny_models, text_corpus):
    return cache_tiny_catalog(tmp_path / "c.duckdb", tiny_models["gpt2"], text_corpus, tmp_path / "sae")


def judge_or_explain(prompt: str) -> str:
    return yes(prompt) if is_judge(prompt) else "Explanation: words about animals.\nMore text."


def scripted_factory(chat: ScriptedChat):
    simulator = ScriptedSimulator(lambda tokens: [0.5] * len(tokens))
    return lambda spec: simulator if spec == "local" else chat


def rows(path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


CONFIG = LabelConfig(llm="openai:scripted", simulator="local", scorers="simulation,detection,fuzzing,embedding",
                     limit=3, concurrency=2, device="cpu")


def test_label_records_explanations_scores_and_embeddings(catalog):
    chat = ScriptedChat(judge_or_explain)
    result = run_label(CONFIG, "resid_post.1", catalog, progress=False, llm_factory=scripted_factory(chat))
    assert (result.labeled, result.failed, len(result.targets)) == (3, 0, 3)
    explanations = rows(catalog, "SELECT feature, text, status, llm, prompt_hash, len(embedding), prompt_tokens "
                                 "FROM explanations ORDER BY feature")
    assert [row[0] for row in explanations] == result.targets
    assert all(row[1:4] == ("words about animals", "ok", "scripted") for row in explanations)
    assert all(len(row[4]) == 16 and row[5] == 384 and row[6] > 0 for row in explanations)
    scores = rows(catalog, "SELECT scorer, metric, status, n, ci_low <= value AND value <= ci_high FROM scores")
    assert {(s[0], s[1]) for s in scores} >= {("simulation", "pearson"), ("detection", "balanced_accuracy"),
                                               ("detection", "auroc"), ("embedding", "auroc")}
    assert all(s[2] == "failed" or (s[3] > 0 and s[4]) for s in scores)
    assert rows(catalog, "SELECT status FROM runs WHERE kind = 'label'") == [("complete",)]


def test_explainer_never_sees_the_examples_that_score_it(catalog):
    chat = ScriptedChat(judge_or_explain)
    run_label(CONFIG, "resid_post.1", catalog, progress=False, llm_factory=scripted_factory(chat))
    (feature,) = rows(catalog, "SELECT min(feature) FROM explanations")[0]
    explain_prompt = next(p for p in chat.prompts if not is_judge(p))
    score_windows = rows(catalog, f"SELECT list_aggregate(w.tokens[2:], 'string_agg', '') FROM examples e "
                                  f"JOIN windows w USING (feature_set_id, window_id) WHERE e.feature = {feature} "
                                  "AND e.split = 'score' AND e.bucket = 'top'")
    explain_windows = rows(catalog, f"SELECT count(*) FROM examples WHERE feature = {feature} AND split = 'explain' "
                                    "AND bucket = 'top'")[0][0]
    assert explain_windows > 0 and score_windows
    plain = explain_prompt.replace("<<", "").replace(">>", "")
    assert not any(text in plain for (text,) in score_windows)


def test_rerun_skips_labeled_features_and_scores_only_what_is_missing(catalog):
    chat = ScriptedChat(judge_or_explain)
    factory = scripted_factory(chat)
    first = LabelConfig(llm="openai:scripted", scorers="embedding", limit=2, device="cpu")
    run_label(first, "resid_post.1", catalog, progress=False, llm_factory=factory)
    calls = len(chat.prompts)
    again = run_label(first, "resid_post.1", catalog, progress=False, llm_factory=factory)
    assert (again.labeled, len(chat.prompts)) == (0, calls)
    more = LabelConfig(llm="openai:scripted", scorers="embedding,detection", limit=3, device="cpu")
    result = run_label(more, "resid_post.1", catalog, progress=False, llm_factory=factory)
    assert result.labeled == 3
    assert rows(catalog, "SELECT count(*) FROM explanations") == [(3,)]  # two reused, one new
    assert rows(catalog, "SELECT count(DISTINCT explanation_id) FROM scores WHERE scorer = 'detection'") == [(3,)]


def test_a_failing_llm_is_recorded_per_feature_and_the_run_goes_on(catalog):
    failing_once = iter([LLMError("LLM endpoint http://x answered 500: overloaded")])

    def answer(prompt: str):
        if not is_judge(prompt):
            return next(failing_once, "Explanation: animals")
        return yes(prompt)

    config = LabelConfig(llm="openai:scripted", scorers="detection", limit=3, concurrency=1, device="cpu")
    result = run_label(config, "resid_post.1", catalog, progress=False,
                       llm_factory=scripted_factory(ScriptedChat(answer)))
    assert (result.labeled, result.failed) == (2, 1)
    assert rows(catalog, "SELECT status, error FROM explanations WHERE status = 'failed'") == [
        ("failed", "LLM endpoint http://x answered 500: overloaded")]
    # A rerun retries the failed feature only.
    rerun = run_label(config, "resid_post.1", catalog, progress=False,
                      llm_factory=scripted_factory(ScriptedChat(answer)))
    assert (rerun.labeled, rerun.failed) == (1, 0)


@pytest.mark.parametrize("answer, error", [
    ("", "LLM gave no explanation"),
    ("x" * 500, "over the limit of 200"),
])
def test_unusable_explanations_are_failures_never_labels(catalog, answer, error):
    config = LabelConfig(llm="openai:scripted", scorers="embedding", limit=1, device="cpu")
    run_label(config, "resid_post.1", catalog, progress=False,
              llm_factory=scripted_factory(ScriptedChat(lambda p: answer)))
    ((status, text, message),) = rows(catalog, "SELECT status, text, error FROM explanations")
    assert status == "failed" and text is None and error in message
    assert rows(catalog, "SELECT count(*) FROM scores") == [(0,)]


def test_concurrency_keeps_several_features_in_flight(catalog):
    active, peak, lock = [0], [0], threading.Lock()

    def slow(prompt: str) -> str:
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        time.sleep(0.2)
        with lock:
            active[0] -= 1
        return "Explanation: animals"

    config = LabelConfig(llm="openai:scripted", scorers="", limit=6, concurrency=3, device="cpu")
    result = run_label(config, "resid_post.1", catalog, progress=False,
                       llm_factory=scripted_factory(ScriptedChat(slow)))
    assert result.labeled == 6 and peak[0] == 3


def test_token_stats_labels_without_any_llm_and_search_finds_the_feature(catalog, capsys):
    assert main(["label", "mlp.1", "--explainer", "token-stats", "--scorers", "embedding", "--limit", "4",
                 "--catalog", str(catalog), "--no-progress", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "labeled 4, failed 0" in out and "the tokens" in out
    texts = rows(catalog, "SELECT feature, text, llm FROM explanations ORDER BY feature")
    assert len(texts) == 4 and all(llm == "" for _, _, llm in texts)
    feature, text, _ = texts[2]
    assert main(["search", text, "-n", "1", "--catalog", str(catalog)]) == 0
    out = capsys.readouterr().out
    assert f"│ {feature} " in out or f" {feature} " in out


@pytest.mark.parametrize("flags, message", [
    (["--explainer", "magic"], "unknown explainer 'magic'"),
    (["--scorers", "simulation,vibes"], "unknown scorer 'vibes'"),
    (["--concurrency", "-1"], "--concurrency must be zero or more"),
    (["--features", "1,x"], "--features must be comma-separated integers"),
    # Checked before any model loads: the LLM path below would fail otherwise.
    (["--features", "99999", "--llm", "local:/no/such/model"], "features [99999] are out of range"),
    (["--llm", "gpt4"], "unknown LLM 'gpt4'"),
])
def test_bad_label_flags_are_one_line_errors_and_write_nothing(catalog, capsys, flags, message):
    before = rows(catalog, "SELECT count(*) FROM runs")
    assert main(["label", "mlp.1", "--catalog", str(catalog), "--no-progress", *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert rows(catalog, "SELECT count(*) FROM runs") == before
    assert rows(catalog, "SELECT count(*) FROM explanations") == [(0,)]


def test_a_missing_catalog_is_a_clear_error_and_is_not_created(tmp_path, capsys):
    missing = tmp_path / "none.duckdb"
    assert main(["label", "mlp.6", "--catalog", str(missing)]) == 2
    assert "does not exist; run `interp cache` first" in capsys.readouterr().err
    assert not missing.exists()


def test_unknown_feature_set_is_a_clear_error(catalog, capsys):
    assert main(["label", "mlp.7", "--catalog", str(catalog)]) == 2
    assert "no feature set 'mlp.7'" in capsys.readouterr().err
    with pytest.raises(InterpError, match="no feature set"):
        run_label(CONFIG, "nope", catalog, progress=False)


def test_evidence_explainer_reads_the_subject_models_output_effect(catalog):
    chat = ScriptedChat(judge_or_explain)
    config = LabelConfig(explainer="evidence", llm="openai:scripted", scorers="", limit=1, device="cpu")
    result = run_label(config, "resid_post.1", catalog, progress=False, llm_factory=scripted_factory(chat))
    assert result.labeled == 1
    (prompt,) = chat.prompts
    promoted = prompt.split("more likely to predict next: ")[1].split("\n")[0]
    assert promoted.count('"') == 20  # ten tokens of the tiny vocabulary, quoted
    assert rows(catalog, "SELECT explainer FROM explanations") == [("evidence",)]


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGKILL])
def test_a_stopped_label_run_keeps_finished_features_and_the_rerun_does_the_rest(stop_signal, catalog):
    """Against a real server process that answers two explanations and holds the third until told: the run is
    stopped once those two features are committed, on any machine. kill -9 keeps the two; Ctrl-C lets the
    feature in flight finish (the server is released once the run says it is stopping) and keeps three."""
    import urllib.request

    from tests.agent.test_cli import interp_command
    from tools.catalog import Catalog
    from tools.interrupts import STOPPING
    from tools.testing.servers import stub_server

    def labeled() -> int:
        with Catalog(catalog, read_only=True) as opened:  # takes its turn while the run writes
            return opened.con.execute("SELECT count(*) FROM explanations WHERE status = 'ok'").fetchone()[0]

    args = ["label", "resid_post.1", "--llm", "openai:stub", "--base-url", "URL", "--scorers", "detection",
            "--score-active", "2", "--score-random", "2", "--limit", "6", "--concurrency", "1",
            "--catalog", str(catalog), "--no-progress", "--device", "cpu"]
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    with stub_server(explanations=2) as url:
        args[args.index("URL")] = url
        process = subprocess.Popen(interp_command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                   text=True)
        deadline = time.monotonic() + 300  # a stated bound: two features of a tiny model take seconds
        while labeled() < 2:
            assert process.poll() is None, f"the run ended before two features were committed: {process.stderr}"
            assert time.monotonic() < deadline, "the run committed fewer than two features within 300 s"
            time.sleep(0.1)  # pacing only: the run cannot get past two features while the server holds the third
        process.send_signal(stop_signal)
        release = urllib.request.Request(url.removesuffix("/v1") + "/release", method="POST")
        if stop_signal == signal.SIGINT:
            assert process.stderr is not None
            said = []
            while not said or said[-1] not in (STOPPING.splitlines()[-1] + "\n", ""):
                said.append(process.stderr.readline())  # returns "" once the run has ended
            assert said[-1] and "Traceback" not in "".join(said), said
            urllib.request.urlopen(release)
        _, err = process.communicate(timeout=120)
        kept = labeled()
        if stop_signal == signal.SIGINT:
            assert process.returncode == 130 and "rerun the same command to label the rest" in err, err
            assert kept == 3
        else:
            assert process.returncode == -signal.SIGKILL and kept == 2
            urllib.request.urlopen(release)
        rerun = subprocess.run(interp_command(*args), env=env, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert f"labeling {6 - kept} of 6 features" in rerun.stderr
    assert rows(catalog, "SELECT count(*), count(DISTINCT feature) FROM explanations") == [(6, 6)]
    # Every explanation has its detection scores: none was written without them.
    assert rows(catalog, "SELECT count(DISTINCT explanation_id) FROM scores") == [(6,)]


def test_adding_the_embedding_scorer_later_reuses_the_explanations_stored_vectors(catalog, monkeypatch):
    """The second pass embeds only the excerpts, and scores as a pass that embeds the explanation anew."""
    from evals.scorers.embedding import Embedder

    chat = ScriptedChat(judge_or_explain)
    factory = scripted_factory(chat)
    run_label(LabelConfig(llm="openai:scripted", scorers="detection", limit=2, device="cpu"), "resid_post.1",
              catalog, progress=False, llm_factory=factory)
    embedded: list[str] = []
    run_waiting = Embedder._run_waiting

    def recording(self: Embedder) -> None:
        embedded.extend(self._waiting.texts)
        run_waiting(self)

    later = LabelConfig(llm="openai:scripted", scorers="detection,embedding", limit=2, device="cpu")
    with monkeypatch.context() as patched:
        patched.setattr(Embedder, "_run_waiting", recording)
        result = run_label(later, "resid_post.1", catalog, progress=False, llm_factory=factory)
    assert result.labeled == 2 and embedded and "words about animals" not in embedded
    reused = [value for (value,) in rows(catalog, "SELECT value FROM scores WHERE scorer = 'embedding' "
                                                  "ORDER BY explanation_id")]
    with duckdb.connect(str(catalog)) as con:  # the same features embedded from scratch
        con.execute("DELETE FROM scores WHERE scorer = 'embedding'")
        con.execute("UPDATE explanations SET embedding = NULL")
    run_label(later, "resid_post.1", catalog, progress=False, llm_factory=factory)
    fresh = [value for (value,) in rows(catalog, "SELECT value FROM scores WHERE scorer = 'embedding' "
                                                 "ORDER BY explanation_id")]
    assert len(reused) == 2 and reused == pytest.approx(fresh, abs=1e-6)
