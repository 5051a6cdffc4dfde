"""One MCP session's provenance and budget: a run in the catalog, every tool call an `experiments` row as it
happens, and each recorded finding an explanation by `mcp`, scored on the held-out split the client never saw.

The SDK-facing server (agent/mcp/server.py) hands calls here; nothing here knows the protocol. Calls run one
at a time (the subject model is shared by every session of a server), and the catalog is opened only for
each write, so `interp label` or a browser can use it between calls.
"""

import threading
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from agent.investigate.graph import experiment_rows
from agent.investigate.toolbox import FeatureArgs, Tool, Toolbox, ToolCall
from agent.investigate.workbench import Workbench
from agent.labeling.config import LabelConfig
from agent.labeling.explainers import RecordedExplainer
from agent.labeling.rows import explanation_row, score_rows
from agent.mcp.catalog_views import ListFeaturesArgs, NoArgs, feature_sets_text, feature_summary_text, features_text
from evals.scorers.base import Scorer
from tools.catalog import Catalog
from tools.errors import InterpError
from tools.llm.interface import Usage

EXPLAINER = "mcp"


@dataclass(frozen=True)
class SessionBudget:
    tool_calls: int = 200
    seconds: float = 3600.0

    def __post_init__(self) -> None:
        if self.tool_calls <= 0 or self.seconds <= 0:
            raise InterpError(f"session budgets must be positive, got {self.tool_calls} tool calls and "
                              f"{self.seconds:g} seconds")


@dataclass(frozen=True)
class Outcome:
    text: str
    ok: bool
    known: bool = True
    """False for a tool the server does not have: the protocol answers that with an error, not a result."""


@dataclass
class Shared:
    """What every session of one server shares: the workbench (the subject model loads once, on first use),
    the scorers, and the lock that runs one call at a time."""

    catalog_path: Path
    bench: Workbench
    config: LabelConfig
    scorers: list[Scorer]
    budget: SessionBudget
    lock: threading.Lock = field(default_factory=threading.Lock)


def session_toolbox(shared: Shared) -> Toolbox:
    """The agent's toolbox plus the catalog reads an MCP client needs first (there is no score tool)."""
    toolbox = Toolbox(shared.bench)
    bench = shared.bench

    def read(view):
        def run(args) -> str:
            with Catalog(shared.catalog_path, read_only=True) as catalog:
                return view(catalog, args)
        return run

    extra = (
        Tool("list_feature_sets", "Feature sets in the catalog: model, hook, kind, width, tokens cached.", NoArgs,
             read(lambda catalog, _: feature_sets_text(catalog))),
        Tool("list_features", f"Features of {bench.set_id} with the most activation (or density), with their "
             "latest explanation.", ListFeaturesArgs, read(lambda catalog, args: features_text(catalog, bench.set_id,
                                                                                               args))),
        Tool("feature_summary", "One feature's statistics and every explanation recorded for it, with its scores.",
             FeatureArgs, read(lambda catalog, args: feature_summary_text(catalog, bench.set_id, args.feature))),
    )
    toolbox.tools = {tool.name: tool for tool in extra} | toolbox.tools
    return toolbox


class McpSession:
    """A client's session. The run starts with its first call and ends when the session closes or its budget
    is spent; after that every call is refused, unrun and unlogged."""

    def __init__(self, shared: Shared, client: str):
        self.shared = shared
        self.client = client
        self.toolbox = session_toolbox(shared)
        self.calls = 0
        self.started = time.monotonic()
        self.spent = ""
        self._run = ExitStack()
        self.run_id = self._run.enter_context(Catalog.run(shared.catalog_path, "mcp", {
            "feature_set": shared.bench.set_id, "client": client, "scorers": shared.config.scorer_names(),
            "budget": {"tool_calls": shared.budget.tool_calls, "seconds": shared.budget.seconds}}))

    def over_budget(self) -> str:
        if self.calls >= self.shared.budget.tool_calls:
            return f"{self.calls} tool calls, the session's budget"
        if time.monotonic() - self.started >= self.shared.budget.seconds:
            return f"{self.shared.budget.seconds:g} seconds, the session's budget"
        return ""

    def call(self, name: str, arguments: dict) -> Outcome:
        """Validate, run and record one call (unknown tools and invalid arguments are recorded, never run)."""
        with self.shared.lock:
            if self.spent:
                return Outcome(f"error: this session has spent {self.spent}; start a new session", False)
            done = self.toolbox.call(name, arguments)
            self.calls += 1
            explanation_id = self._record_finding(done) if name == "record_finding" and done.ok else None
            self._write([done], explanation_id)
            text = done.result
            if explanation_id:
                text = text.replace("</tool_result>", f"(explanation {explanation_id}; it is scored on held-out "
                                    "examples you do not see)\n</tool_result>")
            self.spent = self.over_budget()
            if self.spent:
                self.close()
            return Outcome(text, done.ok, name in self.toolbox.tools)

    def _write(self, calls: list[ToolCall], explanation_id: str | None) -> None:
        rows = experiment_rows(calls, explanation_id, self.run_id)
        for row in rows:
            row["step"] = self.calls - len(calls) + row["step"]
        with Catalog(self.shared.catalog_path) as catalog:
            catalog.record_experiments(rows)

    def _record_finding(self, done: ToolCall) -> str:
        """The finding as an explanation by `mcp` (the client's name and version as its LLM), scored now by
        the server's scorers on the held-out split."""
        finding = self.toolbox.findings[-1]
        bench, feature, text = self.shared.bench, finding["feature"], finding["explanation"].strip()
        explainer = RecordedExplainer(EXPLAINER, f"mcp:{self.client}", "")
        row = explanation_row(explainer, bench.embedder, bench.set_id, feature, self.run_id, text, None, Usage())
        record = bench.record(feature, self.shared.config.score_active, self.shared.config.score_random)
        scores = []
        for scorer in self.shared.scorers:
            scores += score_rows(scorer, text, record, row["explanation_id"], self.run_id)[0]
        with Catalog(self.shared.catalog_path) as catalog:
            catalog.record_labels([(row, scores)])
        return row["explanation_id"]

    def close(self) -> None:
        self._run.close()
