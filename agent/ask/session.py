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

from dataclasses import dataclass
from pathlib import Path

from agent.ask.graphs import FixedAsk, FreeAsk
from agent.ask.sessions import Sessions, sessions_path
from agent.investigate.free_agent import Budget
from agent.investigate.graph import experiment_rows
from agent.investigate.toolbox import Toolbox, ToolWatcher
from agent.investigate.workbench import Workbench
from agent.labeling.backends import Backends
from agent.labeling.config import LabelConfig
from tools.catalog import Catalog
from tools.errors import InterpError
from tools.llm.interface import Usage

GRAPHS = ("auto", "fixed", "free")


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
        with Catalog.run(catalog_path, "ask", self.config.recorded() | {
                "session": self.id, "feature_set": self.row["feature_set_id"], "feature": feature,
                "question": question, "graph": self.asker.name, "llm_name": self.asker.llm_name,
                "prompt_hash": self.asker.prompt_hash}) as run_id:
            inputs = self.asker.inputs(previous, question, feature)
            config = self.thread | {"recursion_limit": self.asker.recursion_limit}
            for update in self.graph.stream(inputs, config, stream_mode="updates"):
                for name, values in update.items():
                    if on_step:
                        on_step(name, values or {})
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
        raise InterpError("interp ask needs a feature set and a feature (interp ask SET FEATURE), "
                          "or a session to resume (--session ID)")
    if session_id is None and feature is None:
        raise InterpError(f"which feature of '{feature_set_ref}'? `interp ask {feature_set_ref} FEATURE` "
                          f"(`interp features {feature_set_ref}` lists them)")
    path = sessions_path(catalog_path)
    if session_id and not path.exists():
        raise InterpError(f"no ask session '{session_id}': no sessions beside {catalog_path} yet ({path})")
    sessions = Sessions(path) if session_id else None
    try:
        row = sessions.get(session_id) if sessions and session_id else None
        if row and graph and graph != "auto" and graph != row["graph"]:
            raise InterpError(f"session {session_id} uses the {row['graph']} graph, not {graph}; "
                              "start a new session for another graph")
        set_ref = row["feature_set_id"] if row else feature_set_ref
        if set_ref is None:
            raise InterpError("which feature set? give it, or resume a session with --session ID")
        bench = Workbench(catalog_path, set_ref, config.device, config.embedder)
        if row and feature_set_ref and bench.set_id != Workbench(catalog_path, feature_set_ref).set_id:
            raise InterpError(f"session {session_id} is about feature set {bench.set_id}, not '{feature_set_ref}'")
        feature = row["feature"] if row and feature is None else feature
        if feature is None:
            raise InterpError(f"which feature of '{set_ref}'? `interp ask {set_ref} FEATURE`")
        bench.check_feature(feature)
        kind = row["graph"] if row else choose_graph(graph or "auto", config)
        if kind == "free":
            choose_graph("free", config)  # a resumed free session asked with a local LLM
        backends = Backends(config, llm_factory)
        llm = backends.get(config.llm)
        toolbox = Toolbox(bench, watcher=watcher)
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
