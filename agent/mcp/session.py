"""One MCP session's provenance and budget: a run in the catalog, every tool call an `experiments` row as it
happens, and each recorded finding an explanation by `mcp`, scored on the held-out split the client never saw.

A server serves every feature set of its catalog: each tool that acts on a set takes an optional
`feature_set` (id, prefix or hook name), which falls back to the server's default set (`--feature-set`, or
the catalog's only one). Each set gets its workbench on first use; they share the embedder.

The SDK-facing server (agent/mcp/server.py) hands calls here; nothing here knows the protocol. Calls run one
at a time (the subject model is shared by every session of a server), and the catalog is opened only for
each write, so `interp label` or a browser can use it between calls.
"""

import dataclasses
import threading
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import BaseModel, Field, create_model

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


SET_FREE_TOOLS = ("list_feature_sets", "search_catalog")
"""Tools that read the whole catalog, not one set: they take no `feature_set`."""


class Benches:
    """One workbench per feature set, made on first use (a set's subject model loads on its first experiment).
    `default` is the set a call that names none acts on; None means the client must name one whenever the
    catalog holds several."""

    def __init__(self, catalog_path: Path, device: str, embedder_spec: str, default: str | None = None):
        self.catalog_path = Path(catalog_path)
        self.device = device
        self.embedder_spec = embedder_spec
        with Catalog(self.catalog_path, read_only=True) as catalog:
            sets = catalog.feature_sets()
            if not sets:
                raise InterpError(f"catalog '{self.catalog_path}' has no feature sets yet; run `interp cache` first")
            if default is not None:
                default = catalog.feature_set(default)["feature_set_id"]
            elif len(sets) == 1:
                default = sets[0]["feature_set_id"]
        self.default = default
        self._benches: dict[str, Workbench] = {}

    def get(self, ref: str | None) -> Workbench:
        ref = ref or self.default
        if ref is None:
            raise InterpError("which feature set? this catalog holds several: pass feature_set (list_feature_sets "
                              "names them)")
        with Catalog(self.catalog_path, read_only=True) as catalog:
            set_id = catalog.feature_set(ref)["feature_set_id"]
        if set_id not in self._benches:
            bench = Workbench(self.catalog_path, set_id, self.device, self.embedder_spec)
            if self._benches:  # one embedder for every set (cached_property keeps its value in __dict__)
                bench.__dict__["embedder"] = next(iter(self._benches.values())).embedder
            self._benches[set_id] = bench
        return self._benches[set_id]

    def any(self) -> Workbench:
        """A workbench to build the tool list from (the default set's, else the catalog's first)."""
        if self.default is not None:
            return self.get(None)
        with Catalog(self.catalog_path, read_only=True) as catalog:
            return self.get(catalog.feature_sets()[0]["feature_set_id"])


@dataclass
class Shared:
    """What every session of one server shares: the workbenches (each set's subject model loads once, on first
    use), the scorers, and the lock that runs one call at a time."""

    catalog_path: Path
    benches: Benches
    config: LabelConfig
    build_scorers: Callable[[Workbench], list[Scorer]]
    budget: SessionBudget
    lock: threading.Lock = field(default_factory=threading.Lock)
    _scorers: dict[str, list[Scorer]] = field(default_factory=dict)

    def scorers(self, bench: Workbench) -> list[Scorer]:
        """The scorers of one set's findings, built on its first finding."""
        if bench.set_id not in self._scorers:
            self._scorers[bench.set_id] = self.build_scorers(bench)
        return self._scorers[bench.set_id]


def with_feature_set(arguments: type[BaseModel], default: str | None) -> type[BaseModel]:
    """The tool's argument model plus the optional `feature_set` the server reads before the tool runs."""
    said = f"the server's default, {default}" if default else "required when the catalog holds several sets"
    return create_model(arguments.__name__, __base__=arguments, feature_set=(
        str | None, Field(None, description=f"feature set id, id prefix or hook name (default: {said})")))


def listed_tools(shared: Shared) -> dict[str, Tool]:
    """The tools as a client sees them: each set-bound tool's schema carries `feature_set`."""
    tools = session_toolbox(shared, shared.benches.any()).tools
    return {name: tool if name in SET_FREE_TOOLS else
            dataclasses.replace(tool, arguments=with_feature_set(tool.arguments, shared.benches.default))
            for name, tool in tools.items()}


def session_toolbox(shared: Shared, bench: Workbench) -> Toolbox:
    """The agent's toolbox on one set, plus the catalog reads an MCP client needs first (there is no score
    tool)."""
    toolbox = Toolbox(bench)

    def read(view):
        def run(args) -> str:
            with Catalog(shared.catalog_path, read_only=True) as catalog:
                return view(catalog, args)
        return run

    extra = (
        Tool("list_feature_sets", "Feature sets in the catalog: model, hook, kind, width, tokens cached.", NoArgs,
             read(lambda catalog, _: feature_sets_text(catalog))),
        Tool("list_features", "Features of the set with the most activation (or density), with their "
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
        self.toolboxes: dict[str, Toolbox] = {}
        self.known = set(listed_tools(shared))
        self.calls = 0
        self.started = time.monotonic()
        self.spent = ""
        self._run = ExitStack()
        self.run_id = self._run.enter_context(Catalog.run(shared.catalog_path, "mcp", {
            "feature_set": shared.benches.default, "client": client, "scorers": shared.config.scorer_names(),
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
            done, toolbox = self._call_on_set(name, arguments)
            self.calls += 1
            explanation_id = self._record_finding(done, toolbox) if name == "record_finding" and done.ok else None
            self._write([done], explanation_id)
            text = done.result
            if explanation_id:
                text = text.replace("</tool_result>", f"(explanation {explanation_id}; it is scored on held-out "
                                    "examples you do not see)\n</tool_result>")
            self.spent = self.over_budget()
            if self.spent:
                self.close()
            return Outcome(text, done.ok, name in self.known)

    def _call_on_set(self, name: str, arguments: dict) -> tuple[ToolCall, Toolbox | None]:
        """The call on its feature set's toolbox; the set it ran on goes into the recorded arguments."""
        arguments = dict(arguments)
        set_bound = name in self.known and name not in SET_FREE_TOOLS  # an unknown tool is refused as such
        ref = arguments.pop("feature_set", None) if set_bound else None
        started = time.monotonic()
        try:
            benches = self.shared.benches
            bench = benches.get(None if ref is None else str(ref)) if set_bound else benches.any()
        except InterpError as error:
            result = f'<tool_result name="{name}">\nerror: {error}\n</tool_result>'
            return ToolCall(name, arguments | {"feature_set": ref}, False, result, time.monotonic() - started), None
        toolbox = self.toolboxes.get(bench.set_id)
        if toolbox is None:
            toolbox = self.toolboxes[bench.set_id] = session_toolbox(self.shared, bench)
        done = toolbox.call(name, arguments)
        if set_bound:
            done = dataclasses.replace(done, arguments=done.arguments | {"feature_set": bench.set_id})
        return done, toolbox

    def _write(self, calls: list[ToolCall], explanation_id: str | None) -> None:
        rows = experiment_rows(calls, explanation_id, self.run_id)
        for row in rows:
            row["step"] = self.calls - len(calls) + row["step"]
        with Catalog(self.shared.catalog_path) as catalog:
            catalog.record_experiments(rows)

    def _record_finding(self, done: ToolCall, toolbox: Toolbox | None) -> str:
        """The finding as an explanation by `mcp` (the client's name and version as its LLM), scored now by
        the server's scorers on the held-out split."""
        assert toolbox is not None  # a finding that ran had its set
        finding = toolbox.findings[-1]
        bench, feature, text = toolbox.bench, finding["feature"], finding["explanation"].strip()
        explainer = RecordedExplainer(EXPLAINER, f"mcp:{self.client}", "")
        row = explanation_row(explainer, bench.embedder, bench.set_id, feature, self.run_id, text, None, Usage())
        record = bench.record(feature, self.shared.config.score_active, self.shared.config.score_random)
        scores = []
        for scorer in self.shared.scorers(bench):
            scores += score_rows(scorer, text, record, row["explanation_id"], self.run_id)[0]
        with Catalog(self.shared.catalog_path) as catalog:
            catalog.record_labels([(row, scores)])
        return row["explanation_id"]

    def close(self) -> None:
        self._run.close()
