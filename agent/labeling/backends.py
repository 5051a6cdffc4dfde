"""What a labeling run is built from: the LLM backends (made on first use), the explainer, the scorers and the
embedder, put together once per run as a `Labeler`."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.labeling.config import LabelConfig
from agent.labeling.explainers import Evidence, Explainer, OneShotExplainer, TokenStatsExplainer
from agent.labeling.token_stats import CorpusCounts, token_statistics
from evals.records import FeatureRecord
from evals.scorers.base import Scorer
from evals.scorers.embedding import Embedder, EmbeddingScorer
from tools.errors import InterpError
from tools.llm.endpoint import OpenAIChat
from tools.llm.endpoint_slots import EndpointSlots
from tools.llm.factory import make_llm
from tools.llm.interface import ChatLLM, SlotLLM

PROMOTED_TOKENS = 10


@dataclass
class Labeler:
    """What a run uses on every feature, built once."""

    explainer: Explainer
    scorers: list[Scorer]
    embedder: Embedder


def llm_backend(config: LabelConfig, spec: str) -> ChatLLM:
    llm = make_llm(spec, base_url=config.base_url, api_key_env=config.api_key_env, timeout=config.timeout,
                   max_retries=config.max_retries, concurrency=config.requests_in_flight(), device=config.device)
    if hasattr(llm, "check"):
        llm.check()
    return llm


LLMFactory = Callable[[str], ChatLLM]
"""Builds a backend from an LLM spec; tests pass a scripted one, the CLI the real `make_llm`."""


class Backends:
    """LLMs built on first use, so a run that needs none (token-stats, embedding only) loads none."""

    def __init__(self, config: LabelConfig, factory: LLMFactory | None = None):
        self.config = config
        self.factory = factory or (lambda spec: llm_backend(config, spec))
        self._built: dict[str, ChatLLM] = {}
        self._simulators: dict[str, SlotLLM] = {}

    def get(self, spec: str) -> ChatLLM:
        if spec not in self._built:
            self._built[spec] = self.factory(spec)
        return self._built[spec]

    def simulator(self) -> SlotLLM:
        """The model the user named simulates (--simulator, else --llm): in-process, or through the endpoint's
        prompt log-probabilities, found by one probe; never another model in its place."""
        spec = self.config.simulator or self.config.llm
        if spec not in self._simulators:
            llm = self.get(spec)
            if isinstance(llm, OpenAIChat):
                self._simulators[spec] = EndpointSlots.probe(llm)
            elif isinstance(llm, SlotLLM):
                self._simulators[spec] = llm
            else:
                raise InterpError(f"simulator '{spec}' gives no token probabilities, which simulation needs; pass "
                                  "--simulator local:PATH or leave simulation out of --scorers")
        return self._simulators[spec]


def reading(llm: object) -> str:
    """How a scorer's backend reads its answers, for the lines that say which model did what."""
    if isinstance(llm, EndpointSlots):
        return f"prompt log-probabilities ({llm.mode}, top {llm.top_k})"
    if isinstance(llm, OpenAIChat):
        return ("P(yes) from the answer's top log-probabilities" if llm.chat_logprobs
                else "text answers: the endpoint sends no log-probabilities")
    return "in-process probabilities" if isinstance(llm, SlotLLM) else "text answers"


def roles(labeler: Labeler) -> list[str]:
    """Which model explained and which scored, and how each score was read."""
    explainer = labeler.explainer
    lines = [f"explainer {explainer.name}: {explainer.llm_name or 'no LLM'}"]
    for scorer in labeler.scorers:
        llm = getattr(getattr(scorer, "simulator", None), "llm", None) or getattr(scorer, "llm", None)
        how = f" ({reading(llm)})" if llm is not None else ""
        lines.append(f"{scorer.name}: {scorer.llm_name or 'no LLM'}{how}")
    return lines


def build_labeler(config: LabelConfig, backends: Backends,
                  evidence: Callable[[FeatureRecord], Evidence] | None = None,
                  corpus: CorpusCounts | None = None, explainer: Explainer | None = None) -> Labeler:
    """`explainer`, when given, replaces the one the config names (the planted eval's descriptions)."""
    if explainer is None and config.explainer == "token-stats":
        if corpus is None:
            raise ValueError("the token-stats explainer needs the corpus counts")
        explainer = TokenStatsExplainer(corpus)
    elif explainer is None:
        explainer = OneShotExplainer(backends.get(config.llm), config.n_top, config.n_quantile, evidence)
    embedder = Embedder(config.embedder, device=config.device)
    return Labeler(explainer, build_scorers(config, backends, embedder), embedder)


def build_scorers(config: LabelConfig, backends: Backends, embedder: Embedder) -> list[Scorer]:
    from evals.scorers.detection import DetectionScorer
    from evals.scorers.fuzzing import FuzzingScorer
    from evals.scorers.simulation import AllAtOnceSimulator, SimulationScorer

    makers: dict[str, Callable[[], Scorer]] = {
        "simulation": lambda: SimulationScorer(AllAtOnceSimulator(backends.simulator())),
        # Judge calls of one feature go out together too; the backend's own limit caps the total in flight.
        "detection": lambda: DetectionScorer(backends.get(config.llm), parallel=config.judge_parallel(),
                                             batch=config.effective_judge_batch()),
        "fuzzing": lambda: FuzzingScorer(backends.get(config.llm), parallel=config.judge_parallel(),
                                         batch=config.effective_judge_batch()),
        "embedding": lambda: EmbeddingScorer(embedder),
    }
    return [makers[name]() for name in config.scorer_names()]


def output_evidence(catalog_path: Path, set_id: str, corpus: CorpusCounts,
                    device: str) -> Callable[[FeatureRecord], Evidence]:
    """Token statistics plus the tokens a feature's direct logit effect promotes (loads the subject model)."""
    from tools.experiments.interventions import direct_logit_effect, load_feature_source

    subject, source, _ = load_feature_source(catalog_path, set_id, device)

    def evidence(record: FeatureRecord) -> Evidence:
        effect = direct_logit_effect(subject, source, record.feature)
        promoted = [str(subject.tokenizer.decode([int(i)])) for i in effect.topk(PROMOTED_TOKENS).indices]
        return Evidence(token_statistics(record.explain, corpus), promoted)

    return evidence
