"""`interp ask`: a researcher's questions about a feature, each answered from experiments run for it,
in sessions that persist and resume by id.

Two graphs, as for `interp investigate`. The fixed graph works with any LLM, even the embedded 135M one
that cannot call tools: the graph reads the question and picks the experiments itself (quoted text is
run through the model, "ablate" and "steer" run those interventions, a concept the feature might "fire
on" has the LLM write sentences that are and are not examples of it), runs them, and has the LLM answer
from their results. The free graph lets a tool-calling LLM choose its experiments. Either way every tool
call reaches the terminal as it happens (`ToolWatcher`).

A session is a LangGraph thread checkpointed in SQLite beside the catalog (`<catalog>.sessions.sqlite`),
so it resumes with its conversation; each question is also an `ask` run in the catalog, with its tool
calls and answer in `experiments`.
"""

import dataclasses
import operator
import re
import sqlite3
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph

from agent.free_agent import Budget, FreeAgent
from agent.investigate import experiment_rows
from agent.label import Backends, build_scorers
from agent.llm import ChatLLM, Usage
from agent.prompted import PromptedSteps
from agent.toolbox import MAX_TEXT_CHARS, MAX_TEXTS, Toolbox, ToolCall, ToolWatcher
from agent.workbench import Workbench
from evals.records import FeatureRecord
from prompts import load_prompt
from tools.catalog import Catalog
from tools.configs import LabelConfig
from tools.errors import InterpError

GRAPHS = ("auto", "fixed", "free")
TEST_SENTENCES = 4
TEXTS_TOKENS = 150
CONTROL_WINDOWS = 8
ANSWER_TOKENS = 160
HISTORY_TURNS = 3
STEER_MULTIPLE = 10.0
"""Steering adds this many times the feature's corpus maximum: strong enough to show an effect."""

QUOTED = re.compile(r'"([^"]{2,})"|“([^”]{2,})”|(?<!\w)\'([^\']{2,})\'(?!\w)|`([^`]{2,})`')
ABLATE = re.compile(r"\b(ablat\w*|zero(?:ed|ing)?|knock\w* (?:it )?out|remov\w*|disabl\w*|turn\w* (?:it )?off|"
                    r"switch\w* (?:it )?off)\b", re.I)
STEER = re.compile(r"\b(steer\w*|amplif\w*|boost\w*|strengthen\w*|turn\w* (?:it )?(?:up|down)|increas\w*|"
                   r"add(?:ed|ing)?|clamp\w*)\b", re.I)
NEGATIVE = re.compile(r"\b(negativ\w*|suppress\w*|decreas\w*|reduc\w*|lower\w*|turn\w* (?:it )?down|invert\w*)\b",
                      re.I)
EFFECT = re.compile(r"\b(predict\w*|promot\w*|outputs?|logits?|next tokens?|downstream|effects? on)\b", re.I)
CONCEPT = re.compile(r"\b(?:fires?|firing|activat(?:e|es|ing)|respond(?:s|ing)?|reacts?|detects?|encodes?|"
                     r"represents?|tracks?|cares?|lights? up|sensitive)\b"
                     r"(?:\s+(?:to|on|for|when|with|about|in|at))?\s+(.+)", re.I)
PEAK_LINE = re.compile(r"^\s*\d+\. \(peak (\d+)/10\) (.*)$")
"""A line of `activations_on`'s result (toolbox.example_lines)."""
PRONOUNS = {"it", "this", "that", "them", "anything", "something", "what"}


def sessions_path(catalog_path: Path) -> Path:
    return Path(catalog_path).with_name(Path(catalog_path).name + ".sessions.sqlite")


# ---------------------------------------------------------------------------------------------------------
# The fixed graph's planner: the question's words pick the experiments.


@dataclass(frozen=True)
class Plan:
    calls: tuple[dict, ...]
    """{"tool", "arguments", "label"}: run in order, each result shown under its label."""
    subject: str = ""
    """What the LLM should write example sentences of, run through the model ('' for none)."""


def quoted_texts(question: str) -> list[str]:
    found = [next(group for group in match.groups() if group) for match in QUOTED.finditer(question)]
    return list(dict.fromkeys(text[:MAX_TEXT_CHARS] for text in found))[:MAX_TEXTS]


def concept_of(question: str) -> str:
    """What the question asks the feature to fire on: 'does it fire on French text?' -> 'French text'."""
    match = CONCEPT.search(question)
    subject = match.group(1).strip(" ?.!") if match else ""
    return "" if subject.lower() in PRONOUNS else subject[:MAX_TEXT_CHARS]


def peak_prefix(record: FeatureRecord) -> str:
    """The strongest example up to its peak token, so a steered continuation starts where it fires."""
    if not record.explain_top:
        return "The"
    top = record.explain_top[0]
    peak = max(range(len(top.values)), key=top.values.__getitem__)
    return "".join(top.tokens[max(0, peak - 24):peak + 1]).strip()[:MAX_TEXT_CHARS] or "The"


def call(tool: str, label: str, **arguments) -> dict:
    return {"tool": tool, "arguments": arguments, "label": label}


def plan_experiments(question: str, record: FeatureRecord) -> Plan:
    feature, quoted = record.feature, quoted_texts(question)
    where = "the quoted text" if quoted else "the feature's top examples"
    calls = []
    if ABLATE.search(question):
        texts = quoted or [r.text[:MAX_TEXT_CHARS] for r in record.explain_top[:3]] or [question[:MAX_TEXT_CHARS]]
        calls.append(call("ablate", f"Zeroing the feature on {where}:", feature=feature, texts=texts))
    if STEER.search(question):
        sign = -1.0 if NEGATIVE.search(question) else 1.0
        strength = sign * min(100.0, STEER_MULTIPLE * record.max_act if record.max_act > 0 else 8.0)
        prompt = quoted[0] if quoted else peak_prefix(record)
        calls.append(call("steer", "Steering the feature:", feature=feature, prompt=prompt,
                          strength=round(strength, 2)))
    if quoted and not calls:
        calls.append(call("activations_on", "The feature on the quoted text:", feature=feature, texts=quoted))
    if EFFECT.search(question):
        calls.append(call("logit_effect", "Direct effect on next-token logits:", feature=feature, n=10))
    subject = "" if quoted else concept_of(question)
    if not calls and not subject:
        calls = [call("top_examples", "Where the feature fires most in the corpus:", feature=feature, n=5),
                 call("token_stats", "Tokens it fires on more than the corpus predicts:", feature=feature)]
    return Plan(tuple(calls), subject)


def measured(step: dict, done: ToolCall) -> list[str]:
    """A tool result in a few lines: each text's peak (all peaks and their mean for more than three texts),
    or the head of the result. Cut from the result the tool returned, so it quotes exactly what was shown."""
    body = done.result.split("\n")[1:-1]  # inside the <tool_result> tags
    peaks = [(int(match.group(1)), match.group(2)) for match in map(PEAK_LINE.match, body) if match]
    if done.ok and step["tool"] == "activations_on" and 0 < len(peaks) <= 3:
        shown = [f"peak {peak}/10: {text[:120]}" for peak, text in peaks]
    elif done.ok and peaks:
        values = [peak for peak, _ in peaks]
        shown = [f"peaks {', '.join(map(str, values))} of 10 (mean {sum(values) / len(values):.1f})"]
    else:
        shown = [line[:240] for line in body[:3]]
    return [f"- {step['label']} {' / '.join(shown)}"]


def list_items(text: str, limit: int = TEST_SENTENCES) -> list[str]:
    """Sentences from a list an LLM wrote: numbers, bullets and a gloss after a quoted sentence dropped
    ('1. "Je suis ici" - I am here' -> 'Je suis ici'), repeats removed."""
    items = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:\d+[.)]|[-+*•])\s*", "", line).strip()
        quoted = re.match(r'^"([^"]{3,})"', line)
        item = (quoted.group(1) if quoted else line)[:MAX_TEXT_CHARS]
        if len(item) >= 3 and not item.endswith(":") and item not in items:
            items.append(item)
    return items[:limit]


def usable_answer(text: str) -> str:
    """The LLM's first paragraph, without the repeated lines and echoed result rows small models produce."""
    paragraph = re.sub(r"^\s*Answer:\s*", "", text).strip().split("\n\n")[0]
    kept: list[str] = []
    for line in paragraph.splitlines():
        line = line.strip()
        if line and line not in kept and not PEAK_LINE.search(line):
            kept.append(line)
    return " ".join(kept)[:600] or "(the LLM wrote no usable answer; the measurements are the evidence)"


# ---------------------------------------------------------------------------------------------------------
# The two graphs, each with the same face: inputs for a question, the answer from the final state.


class FixedState(TypedDict, total=False):
    feature: int
    question: str
    subject: str
    plan: list[dict]
    results: str
    answer: str
    history: Annotated[list[dict], operator.add]


class FixedAsk(PromptedSteps):
    """Any LLM: it writes test sentences and the answer; the graph chooses and runs the experiments."""

    name = "fixed"
    prompt_names = ("ask_texts", "ask_answer")
    recursion_limit = 12

    def plan(self, state: FixedState) -> FixedState:
        plan = plan_experiments(state["question"], self.toolbox.bench.record(state["feature"]))
        return {"plan": list(plan.calls), "subject": plan.subject}

    def write_texts(self, state: FixedState) -> FixedState:
        subject, feature = state["subject"], state["feature"]
        answer = self.write("texts", "ask_texts", TEXTS_TOKENS, subject=subject, n=str(TEST_SENTENCES))
        # With no usable sentences the subject itself is the one test text: weak, but an experiment. The
        # control is ordinary corpus text, not LLM-written "other" sentences, which a small LLM gets wrong.
        tests = [call("activations_on", f'Sentences written to contain "{subject}":', feature=feature,
                      texts=list_items(answer) or [subject]),
                 call("top_examples", "Ordinary corpus text (random windows), for comparison:", feature=feature,
                      bucket="random", n=CONTROL_WINDOWS)]
        return {"plan": tests + state["plan"]}

    def experiment(self, state: FixedState) -> FixedState:
        lines = []
        for step in state["plan"]:
            lines += measured(step, self.toolbox.call(step["tool"], step["arguments"]))
        return {"results": "\n".join(lines)}

    def answer(self, state: FixedState) -> FixedState:
        # Earlier questions only, for follow-ups ("and on dogs?"): a small LLM shown an earlier answer repeats it.
        earlier = [turn["question"] for turn in state.get("history", [])[-HISTORY_TURNS:]]
        history = "".join(f"Earlier question: {question}\n" for question in earlier)
        bench = self.toolbox.bench
        text = self.write("answer", "ask_answer", ANSWER_TOKENS, feature=str(state["feature"]),
                          kind=bench.feature_set["kind"], history=history, results=state["results"],
                          question=state["question"])
        # The measurements close every answer: the evidence stands even where a small LLM's prose falls short.
        answer = f"{usable_answer(text)}\n\nMeasured:\n{state['results']}"
        return {"answer": answer,
                "history": [{"feature": state["feature"], "question": state["question"], "answer": answer}]}

    def route(self, state: FixedState) -> str:
        return "write_texts" if state.get("subject") else "experiment"

    def graph(self, checkpointer):
        builder = StateGraph(FixedState)
        for name in ("plan", "write_texts", "experiment", "answer"):
            builder.add_node(name, getattr(self, name))
        builder.add_edge(START, "plan")
        builder.add_conditional_edges("plan", self.route, ["write_texts", "experiment"])
        builder.add_edge("write_texts", "experiment")
        builder.add_edge("experiment", "answer")
        builder.add_edge("answer", END)
        return builder.compile(checkpointer=checkpointer)

    def inputs(self, previous: dict, question: str, feature: int) -> dict:
        return {"feature": feature, "question": question, "subject": "", "plan": [], "results": "", "answer": ""}

    def answer_of(self, values: dict) -> str:
        return values.get("answer", "")


def unanswered(messages: list[dict]) -> list[dict]:
    """Tool replies for calls a stopped question left without one: endpoints refuse a conversation where
    an assistant's tool call has no reply."""
    if not messages or messages[-1].get("role") != "assistant":
        return []
    return [{"role": "tool", "tool_call_id": request["id"], "content": "error: the question was stopped, not run"}
            for request in messages[-1].get("tool_calls", [])]


class FreeAsk:
    """A tool-calling LLM chooses the experiments; the conversation carries over between questions."""

    name = "free"

    def __init__(self, llm: ChatLLM, toolbox: Toolbox, budget: Budget):
        self.agent = FreeAgent(llm, toolbox, budget)
        feature_set = toolbox.bench.feature_set
        prompt = load_prompt("ask_system")
        self.llm_name, self.prompt_hash = llm.name, prompt.sha256
        self.system = prompt.render(
            feature_set=feature_set["feature_set_id"], kind=feature_set["kind"], hook=feature_set["hook"],
            model=feature_set["model"])
        self.recursion_limit = self.agent.recursion_limit

    @property
    def usage(self) -> Usage:
        return self.agent.usage

    def graph(self, checkpointer):
        return self.agent.graph(checkpointer)

    def inputs(self, previous: dict, question: str, feature: int) -> dict:
        messages = previous.get("messages", [])
        new = ([] if messages else [{"role": "system", "content": self.system}]) + unanswered(messages)
        new.append({"role": "user", "content": f"About feature {feature}: {question}"})
        # Budgets are per question: the counters start again while the messages accumulate.
        return {"messages": new, "tool_calls": 0, "tokens": 0, "stop": ""}

    def answer_of(self, values: dict) -> str:
        replies = [m for m in values.get("messages", []) if m["role"] == "assistant" and m.get("content")]
        return replies[-1]["content"].strip() if replies else "(the agent wrote no answer)"


# ---------------------------------------------------------------------------------------------------------
# Sessions.


class Sessions:
    """The ask sessions beside one catalog, in one SQLite file: LangGraph's checkpoints (a session is a
    thread) and a table of what each session is about, to resume one and to list them."""

    def __init__(self, path: Path):
        self.path = path
        # The saver serialises its own use of the connection with a lock; LangGraph may write from a worker.
        self.conn = sqlite3.connect(str(path), check_same_thread=False)
        self.conn.execute("CREATE TABLE IF NOT EXISTS ask_sessions (session_id TEXT PRIMARY KEY, "
                          "created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, feature_set_id TEXT NOT NULL, "
                          "feature INTEGER NOT NULL, graph TEXT NOT NULL, llm TEXT NOT NULL, "
                          "questions INTEGER NOT NULL DEFAULT 0, last_question TEXT)")
        self.conn.commit()
        self.saver = SqliteSaver(self.conn)
        self.saver.setup()

    def close(self) -> None:
        self.conn.close()

    def _rows(self, where: str = "", params: tuple = ()) -> list[dict]:
        cursor = self.conn.execute(f"SELECT * FROM ask_sessions {where} ORDER BY created_at, session_id", params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def all(self) -> list[dict]:
        return self._rows()

    def get(self, session_id: str) -> dict:
        rows = self._rows("WHERE session_id = ?", (session_id,))
        if not rows:
            known = ", ".join(row["session_id"] for row in self.all()[-5:]) or "none yet"
            raise InterpError(f"no ask session '{session_id}' in {self.path} (latest: {known}); "
                              "`interp ask --sessions` lists them")
        return rows[0]

    def create(self, feature_set_id: str, feature: int, graph: str, llm: str) -> dict:
        session_id = uuid.uuid4().hex[:8]
        self.conn.execute("INSERT INTO ask_sessions (session_id, feature_set_id, feature, graph, llm) "
                          "VALUES (?, ?, ?, ?, ?)", (session_id, feature_set_id, feature, graph, llm))
        self.conn.commit()
        return self.get(session_id)

    def focus(self, session_id: str, feature: int) -> None:
        self.conn.execute("UPDATE ask_sessions SET feature = ? WHERE session_id = ?", (feature, session_id))
        self.conn.commit()

    def asked(self, session_id: str, question: str) -> None:
        self.conn.execute("UPDATE ask_sessions SET questions = questions + 1, last_question = ? "
                          "WHERE session_id = ?", (question, session_id))
        self.conn.commit()


@dataclass
class Answer:
    text: str
    run_id: str
    tool_calls: int
    usage: Usage


class AskSession:
    """One open session: ask() answers one question and checkpoints the conversation."""

    def __init__(self, sessions: Sessions, row: dict, toolbox: Toolbox, asker, config: LabelConfig):
        self.sessions, self.row, self.toolbox, self.asker, self.config = sessions, row, toolbox, asker, config
        self.graph = asker.graph(sessions.saver)
        self.thread = {"configurable": {"thread_id": row["session_id"]}}

    @property
    def id(self) -> str:
        return self.row["session_id"]

    @property
    def feature(self) -> int:
        return self.row["feature"]

    @feature.setter
    def feature(self, feature: int) -> None:
        """Switching feature sticks: a resumed session asks about the feature it was left on."""
        self.toolbox.bench.check_feature(feature)
        self.row["feature"] = feature
        self.sessions.focus(self.id, feature)

    @property
    def history(self) -> list[dict]:
        """Earlier questions and answers, oldest first."""
        values = self.graph.get_state(self.thread).values
        if "history" in values:
            return values["history"]
        messages = values.get("messages", [])
        turns, question = [], None
        for message in messages:
            if message["role"] == "user":
                question = message["content"]
            elif message["role"] == "assistant" and message.get("content") and not message.get("tool_calls"):
                turns.append({"question": question, "answer": message["content"]})
        return turns

    def ask(self, question: str, on_step=None) -> Answer:
        question = " ".join(question.split())
        if not question:
            raise InterpError("the question is empty; ask something about the feature")
        feature, catalog_path = self.feature, self.toolbox.bench.catalog_path
        previous = self.graph.get_state(self.thread).values
        first_log, usage_before = len(self.toolbox.log), self.asker.usage
        with Catalog(catalog_path) as catalog:
            run_id = catalog.start_run("ask", dataclasses.asdict(self.config) | {
                "session": self.id, "feature_set": self.row["feature_set_id"], "feature": feature,
                "question": question, "graph": self.asker.name, "llm_name": self.asker.llm_name,
                "prompt_hash": self.asker.prompt_hash}, uuid.uuid4().hex[:16], None, {})
        try:
            inputs = self.asker.inputs(previous, question, feature)
            config = self.thread | {"recursion_limit": self.asker.recursion_limit}
            for update in self.graph.stream(inputs, config, stream_mode="updates"):
                for name, values in update.items():
                    if on_step:
                        on_step(name, values or {})
        except BaseException as stop:
            status = "interrupted" if isinstance(stop, KeyboardInterrupt) else "failed"
            with Catalog(catalog_path) as catalog:
                catalog.set_run_status(run_id, status, f"{type(stop).__name__}: {stop}")
            raise
        answer = self.asker.answer_of(self.graph.get_state(self.thread).values)
        rows = experiment_rows(self.toolbox.log[first_log:], None, run_id)
        with Catalog(catalog_path) as catalog:
            catalog.record_answer(run_id, rows)
        self.sessions.asked(self.id, question)
        tool_calls = sum(1 for row in rows if not row["tool"].startswith("llm:"))
        return Answer(answer, run_id, tool_calls, self.asker.usage - usage_before)

    def close(self) -> None:
        self.sessions.close()

    def __enter__(self) -> "AskSession":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def choose_graph(graph: str, config: LabelConfig) -> str:
    """auto: the free agent for an endpoint (which can call tools), the fixed graph for a local model."""
    if graph not in GRAPHS:
        raise InterpError(f"unknown graph '{graph}'; expected auto, fixed (any LLM) or free (tool-calling endpoints)")
    if graph == "auto":
        return "fixed" if config.llm_is_local else "free"
    if graph == "free" and config.llm_is_local:
        raise InterpError(f"the local LLM '{config.llm}' cannot call tools; use the fixed graph (--graph fixed), "
                          "which works with any LLM, or an OpenAI-compatible endpoint that supports tool calls")
    return graph


def open_session(config: LabelConfig, catalog_path: Path, feature_set_ref: str | None = None,
                 feature: int | None = None, session_id: str | None = None, graph: str | None = None,
                 budget: Budget | None = None, llm_factory=None, watcher: ToolWatcher | None = None) -> AskSession:
    """A new session on (feature set, feature), or an existing one by id; every input is checked before
    any model loads."""
    config.validate()
    catalog_path = Path(catalog_path)
    if not catalog_path.exists():
        raise InterpError(f"no catalog at {catalog_path}; run `interp cache` first")
    if session_id is None and feature_set_ref is None:
        raise InterpError("interp ask needs a feature set and a feature (interp ask SET --feature N), "
                          "or a session to resume (--session ID)")
    if session_id is None and feature is None:
        raise InterpError(f"which feature of '{feature_set_ref}'? give --feature N "
                          f"(`interp features {feature_set_ref}` lists them)")
    path = sessions_path(catalog_path)
    if session_id and not path.exists():
        raise InterpError(f"no ask session '{session_id}': no sessions beside {catalog_path} yet ({path})")
    sessions = Sessions(path) if session_id else None
    try:
        row = sessions.get(session_id) if sessions else None
        if row and graph and graph != "auto" and graph != row["graph"]:
            raise InterpError(f"session {session_id} uses the {row['graph']} graph, not {graph}; "
                              "start a new session for another graph")
        bench = Workbench(catalog_path, row["feature_set_id"] if row else feature_set_ref, config.device,
                          config.embedder)
        if row and feature_set_ref and bench.set_id != Workbench(catalog_path, feature_set_ref).set_id:
            raise InterpError(f"session {session_id} is about feature set {bench.set_id}, not '{feature_set_ref}'")
        feature = row["feature"] if feature is None else feature
        bench.check_feature(feature)
        kind = row["graph"] if row else choose_graph(graph or "auto", config)
        if kind == "free":
            choose_graph("free", config)  # a resumed free session asked with a local LLM
        backends = Backends(config, llm_factory)
        llm = backends.get(config.llm)
        # score_explanation is for the free agent; the fixed graph never calls it, so it loads no simulator.
        scorers = build_scorers(config, backends, bench.embedder) if kind == "free" else []
        toolbox = Toolbox(bench, scorers, watcher=watcher)
        asker = FixedAsk(llm, toolbox) if kind == "fixed" else FreeAsk(llm, toolbox, budget or Budget())
        # A new session is written only now, when every input has held and the models have loaded.
        sessions = sessions or Sessions(path)
        row = row or sessions.create(bench.set_id, feature, kind, llm.name)
        session = AskSession(sessions, row, toolbox, asker, config)
        session.feature = feature
        return session
    except BaseException:
        if sessions:
            sessions.close()
        raise
