"""The LLM backends against real processes: an OpenAI-compatible server on loopback through our endpoint
client, and tiny local models through transformers."""

import json
import time
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from agent.cli import main
from agent.labeling.config import LabelConfig
from agent.labeling.pipeline import run_label
from tests.agent.test_label import catalog, rows  # noqa: F401  (fixture)
from tools.errors import InterpError
from tools.llm.endpoint import OpenAIChat
from tools.llm.factory import make_llm
from tools.llm.interface import LLMError
from tools.llm.local import LocalLLM
from tools.model.subject import load_subject_model
from tools.testing.servers import free_port, stub_server

HELLO = [{"role": "user", "content": "Say hello"}]


def error_body(message: str) -> dict:
    return {"error": {"message": message, "type": "x", "code": None}}


def scripted_server(tmp_path, responses: list):
    script = tmp_path / "script.json"
    script.write_text(json.dumps(responses))
    return stub_server(script=script)


def test_openai_backend_answers_and_counts_tokens():
    with stub_server() as url:
        llm = OpenAIChat("stub", base_url=url)
        completion = llm.chat([{"role": "user", "content": "Is it? Answer Yes or No."}], max_tokens=3)
    assert completion.text == "Yes" and completion.usage.prompt_tokens == 6 and completion.usage.completion_tokens == 1
    assert llm.name == f"openai:stub@{url}"


def test_openai_backend_retries_429_and_5xx_then_succeeds(tmp_path):
    with scripted_server(tmp_path, [[429, error_body("slow down")], [503, error_body("busy")]]) as url:
        assert OpenAIChat("stub", base_url=url, max_retries=2).chat(HELLO, 5).text.startswith("Explanation")


@pytest.mark.parametrize("responses, max_retries, message", [
    ([[500, error_body("overloaded")]], 0, "answered 500: overloaded"),
    ([[401, error_body("bad key")]], 2, "rejected the API key in $OPENAI_API_KEY"),
    ([[404, error_body("The model 'nope' does not exist")]], 2, "model 'stub' not found at"),
    ([[404, {"detail": "Not Found"}]], 2, "has no /chat/completions route .404: Not Found.; is --base-url"),
    ([[200, {"id": "x", "object": "chat.completion", "created": 0, "model": "stub", "choices": []}]], 0,
     "returned no choices"),
    ([[200, "this is not json"]], 0, "malformed answer|returned no choices"),
])
def test_openai_backend_failures_are_one_line_llm_errors(tmp_path, responses, max_retries, message):
    with scripted_server(tmp_path, responses) as url:
        with pytest.raises(LLMError, match=message.replace("$", r"\$")) as raised:
            OpenAIChat("stub", base_url=url, max_retries=max_retries).chat(HELLO, 5)
    assert "\n" not in str(raised.value)


def test_unreachable_endpoint_and_missing_key_are_clear(monkeypatch):
    with pytest.raises(LLMError, match="cannot reach LLM endpoint http://127.0.0.1:"):
        OpenAIChat("m", base_url=f"http://127.0.0.1:{free_port()}/v1", max_retries=0, timeout=2).chat(HELLO, 3)
    monkeypatch.delenv("MY_KEY", raising=False)
    with pytest.raises(InterpError, match=r"\$MY_KEY is not set"):
        make_llm("openai:gpt-4o-mini", api_key_env="MY_KEY")
    with pytest.raises(InterpError, match="names no model"):
        make_llm("openai:")


def test_label_through_a_real_server_process(catalog, capsys):  # noqa: F811
    with stub_server() as url:
        code = main(["label", "resid_post.1", "--llm", "openai:stub", "--base-url", url, "--scorers",
                     "detection,fuzzing", "--limit", "2", "--catalog", str(catalog), "--no-progress"])
    out = capsys.readouterr().out
    assert code == 0 and "labeled 2, failed 0" in out and "words about animals" in out
    assert rows(catalog, "SELECT DISTINCT llm FROM explanations") == [(f"openai:stub@{url}",)]
    usage = rows(catalog, "SELECT sum(prompt_tokens), sum(completion_tokens) FROM scores")[0]
    assert usage[0] > 0 and usage[1] > 0


def test_label_against_an_unreachable_endpoint_fails_before_writing(catalog, capsys):  # noqa: F811
    code = main(["label", "resid_post.1", "--llm", "openai:m", "--base-url", f"http://127.0.0.1:{free_port()}/v1",
                 "--max-retries", "0", "--catalog", str(catalog), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot reach LLM endpoint" in err and err.count("\n") == 1
    assert rows(catalog, "SELECT count(*) FROM runs WHERE kind = 'label'") == [(0,)]


@pytest.fixture(scope="module")
def tiny_llm(tiny_models) -> LocalLLM:
    subject = load_subject_model(str(tiny_models["llama"]), device="cpu")
    return LocalLLM(subject, "local:tiny")


def test_slot_probabilities_equal_a_full_forward_pass_and_reuse_the_prefix(tiny_llm):
    prefix, parts = "the cat runs and the", ["dog sleeps", "or a", "red cat is"]
    labels = ["one", "two", "three"]
    first = tiny_llm.slot_probabilities(prefix, parts, labels)
    again = tiny_llm.slot_probabilities(prefix, parts, labels)
    tokenizer, model = tiny_llm.tokenizer, tiny_llm.model
    ids, slots = tokenizer(prefix)["input_ids"], []
    for index, part in enumerate(parts):
        if index > 0:  # a slot follows every part but the last
            slots.append(len(ids) - 1)
        ids += tokenizer(part, add_special_tokens=False)["input_ids"]
    with torch.no_grad():
        logits = model(torch.tensor([ids])).logits[0]
    label_ids = tiny_llm.label_ids(labels)
    expected = torch.softmax(logits[slots][:, label_ids], dim=-1).numpy()
    np.testing.assert_allclose(first.probabilities, expected, atol=1e-5)
    np.testing.assert_allclose(again.probabilities, expected, atol=1e-5)
    assert again.usage.prompt_tokens < first.usage.prompt_tokens  # the cached prefix is not recomputed


def test_local_llm_chats_judges_and_refuses_labels_that_are_not_one_token(tiny_llm):
    completion = tiny_llm.chat([{"role": "user", "content": "the cat"}], max_tokens=4)
    assert completion.usage.completion_tokens <= 4 and completion.usage.prompt_tokens > 0
    yes_no = tiny_llm.choice_probabilities([{"role": "user", "content": "the cat"}], ["paris", "london"])
    assert yes_no.probabilities.shape == (1, 2) and yes_no.probabilities.sum() == pytest.approx(1.0)
    assert not tiny_llm.single_token_labels(["one", "two cats"])
    with pytest.raises(LLMError, match="not single tokens"):
        tiny_llm.slot_probabilities("a", ["b", "c"], ["one", "two cats"])


def tool_call_response(name: str, arguments: str) -> dict:
    return {"id": "x", "object": "chat.completion", "created": 0, "model": "stub",
            "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
                "role": "assistant", "content": None,
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": name, "arguments": arguments}}]}}],
            "usage": {"prompt_tokens": 7, "completion_tokens": 3, "total_tokens": 10}}


def test_openai_backend_reads_tool_calls_and_reports_endpoints_that_refuse_tools(tmp_path):
    from agent.investigate.free_agent import FreeAgent

    responses = [[200, tool_call_response("token_stats", '{"feature": 3}')],
                 [400, error_body("tools are not supported by this model")]]
    with scripted_server(tmp_path, responses) as url:
        llm = OpenAIChat("stub", base_url=url, max_retries=0)
        turn = llm.chat_tools(HELLO, [{"type": "function", "function": {"name": "token_stats", "parameters": {}}}], 8)
        assert [(c.id, c.name, c.arguments) for c in turn.tool_calls] == [("c1", "token_stats", '{"feature": 3}')]
        assert turn.usage.total == 10
        no_tools = SimpleNamespace(schemas=lambda: [], log=[])  # the refusal comes before any tool would run
        agent = FreeAgent(llm, toolbox=no_tools)
        with pytest.raises(InterpError, match="rejected a request with tools .*use the fixed graph"):
            agent.model({"messages": HELLO})


@pytest.mark.parametrize("responses, message", [
    ([[200, "<html><body>502 Bad Gateway</body></html>"]], "sent a malformed answer"),
    ([[200, {"choices": [{"index": 0, "finish_reason": "stop"}]}]],
     "choices\\[0\\].message is NoneType, expected dict"),
    ([[200, {"choices": [{"message": {"content": 7}}]}]], "message.content is int"),
    ([[200, {"choices": [{"message": {"content": "hi"}}], "usage": {"prompt_tokens": "x"}}]],
     "usage.prompt_tokens is str"),
])
def test_malformed_answers_are_one_line_llm_errors(tmp_path, responses, message):
    with scripted_server(tmp_path, responses) as url, pytest.raises(LLMError, match=message) as raised:
        OpenAIChat("stub", base_url=url, max_retries=0).chat(HELLO, 5)
    assert "\n" not in str(raised.value)


def test_a_trickling_endpoint_cannot_hold_a_call_past_its_deadline(tmp_path):
    body = json.dumps({"choices": [{"message": {"content": "slow"}}]})
    with scripted_server(tmp_path, [[200, body, {"trickle": 1.0}]]) as url:
        started = time.monotonic()
        with pytest.raises(LLMError, match="sent no whole answer within 2 s"):
            OpenAIChat("stub", base_url=url, max_retries=0, timeout=2).chat(HELLO, 5)
        took = time.monotonic() - started  # the server would take ~50 s to send the whole answer
        assert took < 4, f"a call with a 2 s deadline took {took:.1f} s (the test allows 4)"


def test_a_huge_answer_is_refused_without_reading_it_all(tmp_path):
    with scripted_server(tmp_path, [[200, "", {"size": 200 * 2**20}]]) as url:
        started = time.monotonic()
        with pytest.raises(LLMError, match="sent an answer over 8 MiB; refused"):
            OpenAIChat("stub", base_url=url, max_retries=0, timeout=30).chat(HELLO, 5)
        took = time.monotonic() - started
        assert took < 10, f"refusing a 200 MiB answer took {took:.1f} s (the test allows 10, reading it all far more)"


def test_answers_without_a_length_or_compressed_are_read_whole_and_capped(tmp_path):
    """Answers of a known size are read in one piece; the others (no Content-Length, gzip) by chunks, the
    cap counted on what they decode to."""
    body = json.dumps({"choices": [{"message": {"content": "x" * 100_000}}]})
    bomb = json.dumps({"choices": [{"message": {"content": "0" * 20 * 2**20}}]})
    with scripted_server(tmp_path, [[200, body, {"unsized": True}], [200, body, {"gzip": True}],
                                    [200, bomb, {"gzip": True}], [200, "", {"size": 200 * 2**20, "unsized": True}]]) \
            as url:
        chat = OpenAIChat("stub", base_url=url, max_retries=0, timeout=30)
        assert chat.chat(HELLO, 5).text == "x" * 100_000
        assert chat.chat(HELLO, 5).text == "x" * 100_000
        for _ in range(2):
            with pytest.raises(LLMError, match="sent an answer over 8 MiB; refused"):
                chat.chat(HELLO, 5)


def test_a_malformed_answer_fails_one_feature_not_the_run(tmp_path, catalog):  # noqa: F811
    ok = {"choices": [{"message": {"content": "OK"}}]}
    broken = {"choices": [{"index": 0}]}
    with scripted_server(tmp_path, [[200, ok], [200, broken], [200, "<html>oops</html>"]]) as url:
        config = LabelConfig(llm="openai:stub", base_url=url, scorers="", explainer="oneshot", limit=3,
                             concurrency=1, max_retries=0, device="cpu")
        result = run_label(config, "resid_post.1", catalog, progress=False)
    assert (result.labeled, result.failed) == (1, 2)
    errors = rows(catalog, "SELECT error FROM explanations WHERE status = 'failed' ORDER BY feature")
    assert all("sent a malformed answer" in error for (error,) in errors)
    assert rows(catalog, "SELECT status FROM runs WHERE kind = 'label'") == [("complete",)]


def test_requests_keep_the_base_urls_path_and_query_and_skip_proxies_for_loopback(tmp_path, monkeypatch):
    """Some hosts need `?api-version=` on every call; a proxy from the environment must not take loopback
    calls (it would answer for a server it cannot reach)."""
    record = tmp_path / "requests.jsonl"
    with stub_server(record=record) as url:
        monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{free_port()}")  # nothing listens there
        monkeypatch.setenv("OPENAI_API_KEY", "sk-test")
        assert OpenAIChat("stub", base_url=url + "?api-version=2024-06", max_retries=0).chat(HELLO, 3).text
        assert OpenAIChat("stub", base_url=url.replace("http://", "http://me:pw@"), api_key_env="NO_SUCH_KEY",
                          max_retries=0).chat(HELLO, 3).text
    sent = [json.loads(line) for line in record.read_text().splitlines()]
    assert sent == [{"path": "/v1/chat/completions?api-version=2024-06", "auth": "Bearer"},
                    {"path": "/v1/chat/completions", "auth": "Basic"}]


def test_credentials_in_the_endpoint_url_are_never_stored_or_shown(tmp_path):
    from tools.llm.urls import public_url

    assert public_url("https://user:secret@api.example.com:8443/v1?key=abc#x") == "https://api.example.com:8443/v1"
    assert public_url("http://[::1]:8000/v1") == "http://[::1]:8000/v1"
    with stub_server() as url:
        secret = url.replace("http://", "http://me:hunter2@") + "?api_key=hunter2"
        llm = OpenAIChat("stub", base_url=secret)
        assert "hunter2" not in llm.name and llm.chat(HELLO, 3).text
    config = LabelConfig(llm="openai:stub", base_url=secret)
    assert "hunter2" not in json.dumps(config.recorded())


def judge_answer(content: list) -> bytes:
    return json.dumps({"choices": [{"message": {"content": "Yes"}, "logprobs": {"content": content}}],
                       "usage": {"prompt_tokens": 4, "completion_tokens": 1}}).encode()


def alternative(token: str, logprob: float) -> dict:
    return {"token": token, "logprob": logprob, "bytes": list(token.encode())}


def test_a_chat_answers_token_log_probabilities_are_read_and_any_other_shape_falls_back_to_its_text():
    """OpenAI's chat shape, each alternative with its bytes, gives (token, {token: logprob}) per answer token;
    a shape we do not know gives None (the judge reads the text instead) but the answer itself still reads."""
    from tools.llm.endpoint import parse_answer

    read = parse_answer(judge_answer([{"token": "Yes", "logprob": -0.1, "bytes": [89, 101, 115],
                                       "top_logprobs": [alternative("Yes", -0.1), alternative("No", -2.5)]}]))
    assert (read.text, read.usage.total) == ("Yes", 5)
    assert read.token_tops == [("Yes", {"Yes": -0.1, "No": -2.5})]
    for content in ([], [{"token": "Yes"}], [{"token": 3, "top_logprobs": []}], [7],
                    [{"token": "Yes", "top_logprobs": [alternative("Yes", -0.1), 5]}],
                    [{"token": "Yes", "top_logprobs": [{"token": "Yes", "logprob": "high"}]}],
                    [{"token": "Yes", "top_logprobs": [{"logprob": -0.1}]}]):
        answer = parse_answer(judge_answer(content))
        assert (answer.text, answer.token_tops) == ("Yes", None), content
