"""`interp investigate`: one feature, investigated by a graph, scored, and recorded with its experiments.

The fixed graph works with any LLM, even a tiny local one, because the LLM only writes text while the
graph calls the tools:

    gather (examples, statistics, output effect) -> hypothesize -> write tests -> run tests -> revise

The tests are the ones `interp ask` runs for "does it fire on X?": the LLM writes short sentences that
fit the hypothesis (a small LLM can do that; it cannot write the "+"/"-" lists the graph once asked for,
so no hypothesis was ever tested), run beside random corpus windows as the control; then the causal
check: the feature steered from where it fires most (does the continuation fit the hypothesis?) and
zeroed on its top examples (which next tokens lose?). The revision sees all of it, with one line that
says whether the written sentences beat the control.

The free graph (`agent/free_agent.py`) lets a tool-calling LLM choose its own experiments. Either way
the explanation is scored by the scorers `interp label` uses and goes into `explanations` (explainer
"investigate" or "investigate-agent"), with its scores and every step, tool calls and LLM answers alike,
in `experiments`, all in one transaction.
"""

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TypedDict, cast

from langgraph.graph import END, START, StateGraph

from agent.investigate.free_agent import Budget, FreeAgent
from agent.investigate.measure import TEST_SENTENCES, call, list_items, measured, peak_prefix, peaks_of, steer_strength
from agent.investigate.prompted import PromptedSteps
from agent.investigate.toolbox import Toolbox, ToolCall
from agent.investigate.workbench import Workbench
from agent.labeling.backends import Backends, bench_steerer, build_scorers
from agent.labeling.config import LabelConfig
from agent.labeling.explainers import parse_explanation
from agent.labeling.rows import explanation_row, score_rows
from prompts import load_prompt
from tools.catalog import Catalog
from tools.errors import FeatureFailure, InterpError
from tools.llm.interface import ChatLLM, Usage

ANSWER_TOKENS = 48
TESTS_TOKENS = 160
CONTROL_WINDOWS = 8
SUPPORTED_MARGIN = 2.0
"""Mean peak (of 10) the written sentences must beat the random windows by for the hypothesis to hold."""
PROMPTS = ("investigate_hypothesis", "ask_texts", "investigate_revise")


class Investigation(TypedDict, total=False):
    feature: int
    evidence: str
    hypothesis: str
    should_fire: list[str]
    results: str
    supported: bool
    explanation: str
    revised: bool


def mean(values: list[int]) -> float:
    return sum(values) / len(values) if values else 0.0


class Investigator(PromptedSteps):
    """The fixed graph's nodes; its explanations are keyed like an explainer's, so they are scored and
    compared alike."""

    name = "investigate"
    prompt_names = PROMPTS

    def gather(self, state: Investigation) -> Investigation:
        feature = state["feature"]
        calls = [self.toolbox.call("top_examples", {"feature": feature, "n": 8}),
                 self.toolbox.call("token_stats", {"feature": feature}),
                 self.toolbox.call("logit_effect", {"feature": feature, "n": 8})]
        return {"evidence": "\n\n".join(call.result for call in calls)}

    def hypothesize(self, state: Investigation) -> Investigation:
        answer = self.write("hypothesis", "investigate_hypothesis", ANSWER_TOKENS, evidence=state["evidence"])
        return {"hypothesis": parse_explanation(answer)}

    def write_tests(self, state: Investigation) -> Investigation:
        answer = self.write("tests", "ask_texts", TESTS_TOKENS, subject=state["hypothesis"], n=str(TEST_SENTENCES))
        # With no usable sentences the hypothesis itself is the one test text: weak, but an experiment.
        return {"should_fire": list_items(answer) or [state["hypothesis"]]}

    def run_tests(self, state: Investigation) -> Investigation:
        feature, record = state["feature"], self.toolbox.bench.record(state["feature"])
        steps = [call("activations_on", f'Sentences written to fit "{state["hypothesis"]}":', feature=feature,
                      texts=state["should_fire"]),
                 call("top_examples", "Ordinary corpus text (random windows), the control:", feature=feature,
                      bucket="random", n=CONTROL_WINDOWS),
                 call("steer", "Steering the feature from where it fires most:", feature=feature,
                      prompt=peak_prefix(record), strength=steer_strength(record)),
                 call("ablate", "Zeroing the feature on its top examples:", feature=feature,
                      texts=[example.text for example in record.explain_top[:3]] or state["should_fire"])]
        lines, peaks = [], []
        for step in steps:
            done = self.toolbox.call(step["tool"], step["arguments"])
            lines += measured(step, done)
            peaks.append(peaks_of(done))
        written, control = mean(peaks[0]), mean(peaks[1])
        supported = bool(peaks[0]) and written >= control + SUPPORTED_MARGIN
        lines.append(f"- So: the written sentences peak at {written:.1f} of 10 on average, random text at "
                     f"{control:.1f}; the hypothesis is {'supported' if supported else 'not supported'} by them.")
        return {"results": "\n".join(lines), "supported": supported}

    def revise(self, state: Investigation) -> Investigation:
        answer = self.write("revise", "investigate_revise", ANSWER_TOKENS, hypothesis=state["hypothesis"],
                          results=state["results"])
        try:
            return {"explanation": parse_explanation(answer), "revised": True}
        except FeatureFailure:
            # An unusable revision keeps the tested hypothesis; the log shows the answer it replaced.
            return {"explanation": state["hypothesis"], "revised": False}

    def investigate(self, feature: int, on_step=None) -> tuple[str | None, str | None]:
        """(explanation, None), or (None, why) when the LLM gave nothing usable."""
        state: Investigation = {"feature": feature}
        try:
            for update in self.graph().stream(state, {"recursion_limit": 20}, stream_mode="updates"):
                for name, values in update.items():
                    state |= cast(Investigation, values or {})
                    if on_step:
                        on_step(name, values or {})
        except FeatureFailure as failure:
            return None, str(failure)
        return state.get("explanation"), None

    def graph(self):
        builder = StateGraph(Investigation)
        steps = [("gather", self.gather), ("hypothesize", self.hypothesize), ("write_tests", self.write_tests),
                 ("run_tests", self.run_tests), ("revise", self.revise)]
        for name, node in steps:
            builder.add_node(name, node)
        builder.add_edge(START, steps[0][0])
        for (first, _), (second, _) in zip(steps, steps[1:], strict=False):
            builder.add_edge(first, second)
        builder.add_edge(steps[-1][0], END)
        return builder.compile()


class AgentInvestigator:
    """The free tool-calling agent, keyed like an explainer; its explanation is its last recorded finding."""

    name = "investigate-agent"

    def __init__(self, llm: ChatLLM, toolbox: Toolbox, budget: Budget):
        self.agent = FreeAgent(llm, toolbox, budget)
        self.prompt = load_prompt("agent_system")
        self.llm_name = llm.name
        self.prompt_hash = self.prompt.sha256

    @property
    def usage(self) -> Usage:
        return self.agent.usage

    def investigate(self, feature: int, on_step=None) -> tuple[str | None, str | None]:
        feature_set = self.agent.toolbox.bench.feature_set
        system = self.prompt.render(feature=str(feature), feature_set=feature_set["feature_set_id"],
                                    kind=feature_set["kind"], hook=feature_set["hook"], model=feature_set["model"])
        messages = [{"role": "system", "content": system},
                    {"role": "user", "content": f"Investigate feature {feature}."}]
        try:
            state = self.agent.run(messages, on_step)
        except FeatureFailure as failure:
            return None, str(failure)
        findings = [f for f in self.agent.toolbox.findings if f["feature"] == feature]
        if not findings:
            return None, f"the agent recorded no finding for feature {feature} (stopped: {state.get('stop')})"
        return findings[-1]["explanation"], None


@dataclass
class InvestigationResult:
    explanation_id: str
    explanation: str | None
    error: str | None
    scores: list[dict]
    steps: int
    usage: Usage


def experiment_rows(log: list[ToolCall], explanation_id: str | None, run_id: str) -> list[dict]:
    """`explanation_id` is None for an `interp ask` question, which explains nothing."""
    return [{"explanation_id": explanation_id, "step": index, "tool": call.tool,
             "arguments": json.dumps(call.arguments), "ok": call.ok, "result": call.result,
             "seconds": call.seconds, "run_id": run_id} for index, call in enumerate(log)]


GRAPHS = ("fixed", "free")


def run_investigation(config: LabelConfig, feature_set_ref: str, feature: int, catalog_path: Path,
                      graph: str = "fixed", budget: Budget | None = None, llm_factory=None,
                      on_step=None) -> InvestigationResult:
    """Investigate one feature with the fixed graph or the free agent and record everything;
    `on_step(name, update)` sees each node's output as it finishes (the CLI prints them)."""
    if graph not in GRAPHS:
        raise InterpError(f"unknown graph '{graph}'; expected fixed (any LLM) or free (tool-calling endpoints)")
    config.validate()
    bench = Workbench(catalog_path, feature_set_ref, config.device, config.embedder)
    bench.check_feature(feature)
    backends = Backends(config, llm_factory)
    scorers = build_scorers(config, backends, bench.embedder, bench_steerer(bench, config))
    toolbox = Toolbox(bench)
    llm = backends.get(config.llm)
    investigator = Investigator(llm, toolbox) if graph == "fixed" else AgentInvestigator(llm, toolbox,
                                                                                         budget or Budget())
    with Catalog.run(catalog_path, "investigate", config.recorded() | {
            "feature_set": bench.set_id, "feature": feature, "graph": graph}) as run_id:
        explanation, error = investigator.investigate(feature, on_step)
        record = bench.record(feature, config.score_active, config.score_random)
        row = explanation_row(investigator, bench.embedder, bench.set_id, feature, run_id, explanation, error,
                              investigator.usage)
        scores = []
        if explanation:
            for scorer in scorers:
                scores += score_rows(scorer, explanation, record, row["explanation_id"], run_id)[0]
        with Catalog(catalog_path) as catalog:
            catalog.record_investigation(run_id, row, scores, experiment_rows(toolbox.log, row["explanation_id"],
                                                                              run_id))
    return InvestigationResult(row["explanation_id"], explanation, error, scores, len(toolbox.log),
                               investigator.usage)

