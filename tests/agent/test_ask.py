"""`interp ask` on a tiny model's catalog: the fixed graph's planner, both graphs with a scripted LLM at
the boundary, sessions that persist and resume, the terminal loop, and bad input."""

import json
import re

import pytest

from agent.ask.planner import concept_of, plan_experiments, quoted_texts
from agent.ask.session import open_session
from agent.ask.sessions import sessions_path
from agent.ask.terminal import ToolPrinter, converse
from agent.cli import main
from agent.investigate.free_agent import Budget
from agent.investigate.measure import list_items
from agent.labeling.config import LabelConfig
from evals.records import ActivationRecord, FeatureRecord
from tests.agent.test_label import catalog, rows  # noqa: F401  (fixture)
from tests.scripted import ScriptedAgent, ScriptedChat, yes
from tools.errors import InterpError

CONFIG = LabelConfig(llm="openai:scripted", scorers="embedding", device="cpu")
RECORD = FeatureRecord(7, 2.0, [ActivationRecord(["The", " cat", " sat", " down"], [0.0, 0.5, 2.0, 0.1]),
                                ActivationRecord([" a", " dog"], [0.0, 1.0])])


def planned(question: str) -> list[tuple[str, dict]]:
    plan = plan_experiments(question, RECORD)
    return [(step["tool"], step["arguments"]) for step in plan.calls]


def test_the_planner_picks_experiments_from_the_question():
    assert planned('Does it fire on "bonjour le monde" and \'guten Tag\'?') == [
        ("activations_on", {"feature": 7, "texts": ["bonjour le monde", "guten Tag"]})]
    assert planned("What happens if I ablate it?") == [
        ("ablate", {"feature": 7, "texts": ["The cat sat down", " a dog"]})]
    # Steering starts where the strongest example peaks, at ten times the feature's corpus max.
    assert planned("What if we steer it?") == [
        ("steer", {"feature": 7, "prompt": "The cat sat", "strength": 20.0})]
    assert planned('Suppress it by steering on "Once upon"') == [
        ("steer", {"feature": 7, "prompt": "Once upon", "strength": -20.0})]
    assert planned("Which next tokens does it promote?") == [("logit_effect", {"feature": 7, "n": 10})]
    assert [tool for tool, _ in planned("What is this neuron about?")] == ["top_examples", "token_stats"]
    plan = plan_experiments("Does this neuron fire on French?", RECORD)
    assert (plan.calls, plan.subject) == ((), "French")


def test_quotes_and_concepts_are_read_without_tripping_on_apostrophes():
    assert quoted_texts("doesn't it fire on 'cats' or “dogs” or `x = 1`?") == ["cats", "dogs", "x = 1"]
    assert concept_of("Does it respond to numbers in a range?") == "numbers in a range"
    assert concept_of("When does it fire?") == "" and concept_of("does it activate on it?") == ""


def test_list_items_reads_the_lists_small_llms_write():
    assert list_items('Sure:\n1. "Je suis ici" - I am here\n2) Il pleut.\n• Il pleut.\n\n- ok\nThat is all.') == [
        "Je suis ici", "Il pleut.", "That is all."]


def fixed_answers(prompt: str) -> str:
    if prompt.startswith("Write 4 short sentences that contain"):
        return ('Here they are:\n1. "Le chat dort." - The cat sleeps.\n2. Bonjour mes amis.\n- Il pleut.\n'
                '* Merci.\n* Merci.')
    if "Answer the question" in prompt:
        return "Answer: It fires weakly on French.\nIt fires weakly on French.\n1. (peak 2/10) echoed row\n\nMore."
    return yes(prompt)


def test_fixed_graph_answers_from_experiments_and_records_them(catalog):  # noqa: F811
    chat = ScriptedChat(fixed_answers)
    printed = []
    with open_session(CONFIG, catalog, "resid_post.1", 3, graph="fixed", llm_factory=lambda spec: chat,
                      watcher=ToolPrinter(write=printed.append)) as session:
        answer = session.ask("Does this neuron fire on French?")
    # The LLM's first paragraph without repeats or echoed rows, then the measurements it was shown.
    said, measurements = answer.text.split("\n\nMeasured:\n")
    assert said == "It fires weakly on French."
    assert re.fullmatch(r'- Sentences written to contain "French": peaks \d+, \d+, \d+, \d+ of 10 \(mean \d+\.\d\)\n'
                        r"- Ordinary corpus text \(random windows\), for comparison: peaks (\d+, )+\d+ of 10 "
                        r"\(mean \d+\.\d\)", measurements), measurements
    assert answer.tool_calls == 2 and answer.usage.total > 0
    # Both calls streamed as they ran: the call, then its result's lines.
    assert printed[0] == ('  -> activations_on({"feature": 3, "texts": ["Le chat dort.", "Bonjour mes amis.", '
                          '"Il pleut.", "Merci."]})')
    assert any("on your texts" in line for line in printed)
    assert measurements in chat.prompts[-1]
    log = rows(catalog, "SELECT explanation_id, tool, ok FROM experiments ORDER BY step")
    assert log == [(None, "llm:texts", True), (None, "activations_on", True), (None, "top_examples", True),
                   (None, "llm:answer", True)]
    (status, config), = rows(catalog, "SELECT status, config FROM runs WHERE kind = 'ask'")
    config = json.loads(config)
    assert status == "complete" and config["question"] == "Does this neuron fire on French?"
    assert (config["graph"], config["llm_name"], len(config["prompt_hash"])) == ("fixed", "scripted", 16)


def test_sessions_persist_and_resume_by_id_with_their_history(catalog):  # noqa: F811
    chat = ScriptedChat(fixed_answers)
    with open_session(CONFIG, catalog, "resid_post.1", 3, graph="fixed", llm_factory=lambda spec: chat) as session:
        session.ask('Does it fire on "the cat"?')
        session_id = session.id
    assert sessions_path(catalog).exists()
    with open_session(CONFIG, catalog, session_id=session_id, llm_factory=lambda spec: chat) as resumed:
        assert (resumed.feature, resumed.asker.name) == (3, "fixed")
        assert [turn["question"] for turn in resumed.history] == ['Does it fire on "the cat"?']
        resumed.feature = 5
        resumed.ask("What happens if I ablate it?")
        assert [turn["feature"] for turn in resumed.history] == [3, 5]
    # The earlier question is shown to the LLM as context for a follow-up.
    assert 'Earlier question: Does it fire on "the cat"?' in chat.prompts[-1]
    with open_session(CONFIG, catalog, session_id=session_id, llm_factory=lambda spec: chat) as again:
        assert again.feature == 5 and len(again.history) == 2
    assert rows(catalog, "SELECT count(*) FROM runs WHERE kind = 'ask' AND status = 'complete'") == [(2,)]


def agent_turns(messages: list[dict]):
    """Calls a tool on each new question; once the budget is spent, answers citing it."""
    questions = sum(m["role"] == "user" and m["content"].startswith("About feature") for m in messages)
    if messages[-1]["content"].startswith("About feature"):
        return [("activations_on", {"feature": 3, "texts": ["the cat"]})]
    return f"Answer {questions}: it peaks at the cat (see activations_on)."


def test_free_graph_keeps_the_conversation_and_budgets_each_question(catalog):  # noqa: F811
    agent = ScriptedAgent(agent_turns)
    budget = Budget(tool_calls=1, tokens=10_000)
    with open_session(CONFIG, catalog, "resid_post.1", 3, llm_factory=lambda spec: agent, budget=budget) as session:
        assert session.asker.name == "free"  # auto: an endpoint LLM gets the free agent
        first = session.ask("Where does it fire?")
        second = session.ask("And on dogs?")
    assert first.text.startswith("Answer 1") and second.text.startswith("Answer 2")
    assert (first.tool_calls, second.tool_calls) == (1, 1)  # the per-question budget started again
    last = agent.conversations[-1]
    assert last[0]["role"] == "system" and sum(m["role"] == "system" for m in last) == 1
    assert [m["content"] for m in last if m["content"].startswith("About")] == [
        "About feature 3: Where does it fire?", "About feature 3: And on dogs?"]


def test_a_stopped_free_question_leaves_a_conversation_the_endpoint_accepts(catalog):  # noqa: F811
    calls = {"n": 0}

    def turns(messages):
        calls["n"] += 1
        if calls["n"] == 1:
            return [("activations_on", {"feature": 3, "texts": ["the cat"]})]
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return "done"

    agent = ScriptedAgent(turns)
    with open_session(CONFIG, catalog, "resid_post.1", 3, llm_factory=lambda spec: agent) as session:
        with pytest.raises(KeyboardInterrupt):
            session.ask("Where does it fire?")
        assert session.ask("Try again").text == "done"
    # Every tool call in the conversation has its reply before the next user message.
    conversation = agent.conversations[-1]
    asked = [c["id"] for m in conversation if m["role"] == "assistant" for c in m.get("tool_calls", [])]
    replied = [m["tool_call_id"] for m in conversation if m["role"] == "tool"]
    assert asked == replied
    assert sorted(rows(catalog, "SELECT status FROM runs WHERE kind = 'ask'")) == [("complete",), ("interrupted",)]


def test_the_terminal_loop_answers_switches_feature_and_survives_errors(catalog, capsys):  # noqa: F811
    chat = ScriptedChat(fixed_answers)
    lines = iter(["", "/feature 999", "/feature 4", 'Does it fire on "the cat"?', "/nope", "/history", "/quit"])
    with open_session(CONFIG, catalog, "resid_post.1", 3, graph="fixed", llm_factory=lambda spec: chat) as session:
        converse(session, read=lambda prompt: next(lines))
        assert session.feature == 4
        session_id = session.id
    with open_session(CONFIG, catalog, session_id=session_id, llm_factory=lambda spec: chat) as resumed:
        assert resumed.feature == 4  # the switch stuck
    out = capsys.readouterr().out
    assert "error: feature 999 is not in feature set" in out
    assert "It fires weakly on French" in out and "unknown command '/nope'" in out
    assert 'Q: Does it fire on "the cat"?' in out


def test_ask_question_once_from_the_command_line(catalog, capsys, monkeypatch):  # noqa: F811
    chat = ScriptedChat(fixed_answers)
    monkeypatch.setattr("agent.labeling.backends.llm_backend", lambda config, spec: chat)
    assert main(["ask", "resid_post.1", "3", "-q", 'Does it fire on "the cat"?', "--graph", "fixed",
                 "--llm", "openai:scripted", "--catalog", str(catalog)]) == 0
    out = capsys.readouterr().out
    assert '-> activations_on({"feature": 3, "texts": ["the cat"]})' in out
    assert "It fires weakly on French" in out and "resume with: interp ask --session" in out
    session_id = out.split("resume with: interp ask --session ")[1].split()[0]
    assert main(["ask", "--sessions", "--catalog", str(catalog)]) == 0
    assert session_id in capsys.readouterr().out


def test_bad_ask_input_is_a_clear_error_before_anything_is_written(catalog, tmp_path):  # noqa: F811
    def opened(**kwargs):
        return open_session(CONFIG, catalog, llm_factory=lambda spec: ScriptedChat(fixed_answers), **kwargs)

    with pytest.raises(InterpError, match="needs a feature set and a feature"):
        opened()
    with pytest.raises(InterpError, match=r"which feature of 'resid_post.1'\? `interp ask resid_post.1 FEATURE`"):
        opened(feature_set_ref="resid_post.1")
    with pytest.raises(InterpError, match="feature 99 is not in feature set"):
        opened(feature_set_ref="resid_post.1", feature=99)
    with pytest.raises(InterpError, match="cannot call tools; use the fixed graph"):
        open_session(LabelConfig(device="cpu"), catalog, "resid_post.1", 3, graph="free")
    with pytest.raises(InterpError, match="no ask session 'nope'"):
        opened(session_id="nope")
    assert not sessions_path(catalog).exists()  # nothing was valid, so no session file
    with opened(feature_set_ref="resid_post.1", feature=3, graph="fixed") as session:
        with pytest.raises(InterpError, match="the question is empty"):
            session.ask("   ")
    with pytest.raises(InterpError, match=r"no ask session 'nope' in .* \(latest: "):
        opened(session_id="nope")
    with pytest.raises(InterpError, match="no catalog at"):
        open_session(CONFIG, tmp_path / "none.duckdb", "mlp.1", 1)


def test_ask_through_a_real_endpoint_process_that_calls_tools(catalog, tmp_path, capsys, monkeypatch):  # noqa: F811
    """The free agent against the loopback server (a separate process) via the openai client: the
    endpoint asks for a tool, the tool runs and streams, the endpoint answers."""
    from tests.tools.test_llm import tool_call_response
    from tools.testing.loopback_server import completion
    from tools.testing.servers import stub_server

    script = tmp_path / "script.json"
    script.write_text(json.dumps([
        [200, completion("OK", "stub", "probe")],
        [200, tool_call_response("activations_on", '{"feature": 3, "texts": ["the cat"]}')],
        [200, completion("It peaks at 'cat' (activations_on, peak shown above).", "stub", "")]]))
    monkeypatch.setenv("OPENAI_API_KEY", "test-key")
    with stub_server(script=script) as url:
        assert main(["ask", "resid_post.1", "3", "-q", "Where does it fire?", "--llm", "openai:stub",
                     "--base-url", url, "--scorers", "embedding", "--device", "cpu", "--catalog", str(catalog)]) == 0
    out = capsys.readouterr().out
    assert "free graph" in out and '-> activations_on({"feature": 3, "texts": ["the cat"]})' in out
    assert "It peaks at 'cat'" in out and "(1 tool calls;" in out


def test_a_crafted_sessions_file_is_refused_and_runs_nothing(catalog, tmp_path, capsys, monkeypatch):  # noqa: F811
    """LangGraph's default serializer rebuilds objects from msgpack extension types: a checkpoint that
    names os.system would run a shell command on resume. Ours decodes plain data only."""
    import sqlite3

    import ormsgpack

    chat = ScriptedChat(fixed_answers)
    with open_session(CONFIG, catalog, "resid_post.1", 3, graph="fixed", llm_factory=lambda spec: chat) as session:
        session.ask('Does it fire on "the cat"?')
        session_id = session.id
    monkeypatch.setattr("agent.labeling.backends.llm_backend", lambda config, spec: chat)
    marker = tmp_path / "pwned"
    payload = ormsgpack.packb(ormsgpack.Ext(0, ormsgpack.packb(("os", "system", f"touch {marker}"))))
    with sqlite3.connect(sessions_path(catalog)) as conn:
        assert conn.execute("UPDATE checkpoints SET type = 'msgpack', checkpoint = ?", (payload,)).rowcount > 0
    assert main(["ask", "--session", session_id, "-q", "Where does it fire?", "--catalog", str(catalog),
                 "--device", "cpu", "--llm", "openai:scripted"]) == 2
    assert "holds a checkpoint that is not plain data" in capsys.readouterr().err
    assert not marker.exists()
    with sqlite3.connect(sessions_path(catalog)) as conn:
        conn.execute("UPDATE checkpoints SET type = 'pickle', checkpoint = ?", (b"cos\nsystem\n(S'touch x'\ntR.",))
    with pytest.raises(InterpError, match="not plain data \\(type 'pickle'\\)"), \
            open_session(CONFIG, catalog, session_id=session_id, llm_factory=lambda spec: chat) as resumed:
        resumed.ask("Where does it fire?")
