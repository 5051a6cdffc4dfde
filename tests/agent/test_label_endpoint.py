"""`interp label --llm openai:MODEL --base-url URL` against a real vLLM-protocol server process on loopback:
the named model simulates and judges from its own probabilities, the output says so, `--dry-run` spends and
writes nothing, and an endpoint without prompt log-probabilities is refused before anything is written."""

import json

import duckdb
import pytest

from agent.cli import main
from tests.tools.test_endpoint_logprobs import RULE
from tools.testing.servers import vllm_server
from tools.testing.tiny import cache_tiny_catalog, save_tiny_model


@pytest.fixture(scope="module")
def bpe_model(tmp_path_factory):
    return save_tiny_model("llama", tmp_path_factory.mktemp("tiny-bpe"), tokenizer="bpe")


@pytest.fixture
def catalog(tmp_path, tiny_models, text_corpus):
    return cache_tiny_catalog(tmp_path / "c.duckdb", tiny_models["gpt2"], text_corpus, tmp_path / "sae")


def rows(path, sql: str) -> list[tuple]:
    with duckdb.connect(str(path), read_only=True) as con:
        return con.execute(sql).fetchall()


def label_args(url: str, catalog, *more: str) -> list[str]:
    return ["label", "resid_post.1", "--llm", "openai:tiny", "--base-url", url, "--scorers",
            "simulation,detection,fuzzing", "--limit", "2", "--score-active", "3", "--score-random", "3",
            "--catalog", str(catalog), "--no-progress", "--device", "cpu", *more]


def test_the_endpoint_simulates_and_judges_from_its_probabilities_and_says_so(bpe_model, catalog, capsys):
    with vllm_server(bpe_model, *RULE) as url:
        assert main(label_args(url, catalog, "--price-per-mtok", "0.15,0.6")) == 0
    captured = capsys.readouterr()
    name = f"openai:tiny@{url}"
    # Which model does what is a log line (stderr); what the run did and cost are results (stdout).
    assert f"simulation: {name} (prompt log-probabilities (echo, top 20))" in captured.err
    assert f"detection: {name} (P(yes) from the answer's top log-probabilities)" in captured.err
    assert "LLM tokens" in captured.out and "($" in captured.out
    scores = rows(catalog, "SELECT scorer, llm, details FROM scores WHERE status = 'ok'")
    assert {scorer for scorer, _, _ in scores} == {"simulation", "detection", "fuzzing"}
    assert all(llm == name for _, llm, _ in scores)
    simulated = [json.loads(details) for scorer, _, details in scores if scorer == "simulation"]
    assert simulated and all(d["simulator"] == name for d in simulated)
    judged = [json.loads(details) for scorer, _, details in scores if scorer == "detection"]
    assert judged and all(d["text_answers"] == 0 and d["probabilities"] > 0 for d in judged)


def test_a_dry_run_counts_tokens_with_the_endpoint_and_writes_nothing(bpe_model, catalog, capsys):
    before = rows(catalog, "SELECT count(*) FROM runs")
    with vllm_server(bpe_model, *RULE) as url:
        assert main(label_args(url, catalog, "--dry-run", "--price-per-mtok", "1,2")) == 0
    out = capsys.readouterr().out
    assert "dry run: 2 features of resid_post.1-sae-" in out and "left to label; prompts built for 2" in out
    assert "counted by the endpoint's /tokenize" in out
    assert "scorer simulation:" in out and "explainer oneshot:" in out and "whole run:" in out and "$" in out
    # The judges' batched prompts are counted too (they once came out as 0 tokens: the stand-in could not list).
    judges = [line for line in out.splitlines() if line.strip().startswith(("scorer detection:", "scorer fuzzing:"))]
    assert len(judges) == 2 and not any(": 0 prompt" in line for line in judges)
    assert rows(catalog, "SELECT count(*) FROM runs") == before
    assert rows(catalog, "SELECT count(*) FROM explanations") == [(0,)]


def test_an_endpoint_without_prompt_logprobs_is_refused_before_anything_is_written(bpe_model, catalog, capsys):
    before = rows(catalog, "SELECT count(*) FROM runs")
    with vllm_server(bpe_model, "--without", "echo,prompt_logprobs") as url:
        assert main(label_args(url, catalog)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--simulator local:PATH" in err[0] and "simulation out of --scorers" in err[0]
    assert rows(catalog, "SELECT count(*) FROM runs") == before


@pytest.mark.parametrize("flags, message", [
    (["--concurrency", "257"], "--concurrency must be at most 256, got 257"),
    (["--price-per-mtok", "cheap"], "--price-per-mtok must be IN,OUT dollars per million tokens"),
    (["--price-per-mtok=-1,2"], "--price-per-mtok must be two non-negative numbers"),
])
def test_bad_throughput_and_price_flags_get_one_line(catalog, capsys, flags, message):
    assert main(label_args("http://127.0.0.1:9/v1", catalog, *flags)) == 2
    assert message in capsys.readouterr().err
