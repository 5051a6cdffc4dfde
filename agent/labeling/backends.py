"""What a labeling run is built from: the LLM backends (made on first use), the explainer, the scorers and the
embedder, put together once per run as a `Labeler`."""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from agent.labeling.config import LabelConfig
from agent.labeling.explainers import Evidence, Explainer, OneShotExplainer, OutputExplainer, TokenStatsExplainer
from agent.labeling.token_stats import CorpusCounts, token_statistics
from evals.records import FeatureRecord
from evals.scorers.base import Scorer
from evals.scorers.embedding import Embedder, EmbeddingScorer
from tools.errors import InterpError
from tools.experiments.steering import Steerer
from tools.features import FeatureSource
from tools.llm.endpoint import OpenAIChat
from tools.llm.endpoint_slots import EndpointSlots
from tools.llm.factory import make_llm
from tools.llm.interface import ChatLLM, SlotLLM
from tools.model.subject import SubjectModel

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

    def any_in_process(self) -> bool:
        """Whether a backend built so far runs its model in this process (not behind an endpoint)."""
        return any(not isinstance(llm, (OpenAIChat, EndpointSlots)) for llm in (*self._built.values(),
                                                                               *self._simulators.values()))

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
                  corpus: CorpusCounts | None = None, explainer: Explainer | None = None,
                  steerer: Steerer | None = None) -> Labeler:
    """`explainer`, when given, replaces the one the config names (the planted eval's descriptions)."""
    if explainer is None and config.explainer == "token-stats":
        if corpus is None:
            raise ValueError("the token-stats explainer needs the corpus counts")
        explainer = TokenStatsExplainer(corpus)
    elif explainer is None and config.explainer in OutputExplainer.MODES:
        explainer = OutputExplainer(backends.get(config.llm), needs_steerer(steerer, config.explainer),
                                    config.explainer, config.n_top, config.n_quantile)
    elif explainer is None:
        explainer = OneShotExplainer(backends.get(config.llm), config.n_top, config.n_quantile, evidence)
    embedder = Embedder(config.embedder, device=config.device)
    return Labeler(explainer, build_scorers(config, backends, embedder, steerer), embedder)


def bench_steerer(bench, config: LabelConfig) -> Steerer | None:
    """A steerer over a workbench's loaded model, when the config's scorers need one."""
    return Steerer(*bench.subject_and_source) if "intervention" in config.scorer_names() else None


def needs_steerer(steerer: Steerer | None, who: str) -> Steerer:
    if steerer is None:
        raise InterpError(f"{who} steers the subject model, which this command does not load")
    return steerer


def build_scorers(config: LabelConfig, backends: Backends, embedder: Embedder,
                  steerer: Steerer | None = None) -> list[Scorer]:
    from evals.scorers.detection import DetectionScorer
    from evals.scorers.fuzzing import FuzzingScorer
    from evals.scorers.intervention import InterventionScorer
    from evals.scorers.intruder import IntruderScorer
    from evals.scorers.simulation import AllAtOnceSimulator, SimulationScorer

    makers: dict[str, Callable[[], Scorer]] = {
        "simulation": lambda: SimulationScorer(AllAtOnceSimulator(backends.simulator())),
        # Judge calls of one feature go out together too; the backend's own limit caps the total in flight.
        "detection": lambda: DetectionScorer(backends.get(config.llm), parallel=config.judge_parallel(),
                                             batch=config.effective_judge_batch()),
        "fuzzing": lambda: FuzzingScorer(backends.get(config.llm), parallel=config.judge_parallel(),
                                         batch=config.effective_judge_batch()),
        "embedding": lambda: EmbeddingScorer(embedder),
        "intruder": lambda: IntruderScorer(backends.get(config.llm), parallel=config.judge_parallel()),
        "intervention": lambda: InterventionScorer(backends.get(config.llm), needs_steerer(steerer, "intervention"),
                                                   parallel=config.judge_parallel()),
    }
    return [makers[name]() for name in config.scorer_names()]


def model_side(catalog_path: Path, set_id: str, device: str) -> tuple[SubjectModel, FeatureSource]:
    """The subject model and features behind a set, for explainers and scorers that read its output side;
    planted features (no model behind them) are refused here, before anything is written."""
    from tools.experiments.interventions import load_feature_source

    subject, source, _ = load_feature_source(catalog_path, set_id, device)
    if source.not_in_model:
        raise InterpError(f"feature set {set_id} holds planted features, which have no model behind them: the "
                          "evidence, output and both explainers and the intervention scorer read a model's "
                          "neurons, residual dimensions or SAE latents")
    return subject, source


def output_evidence(subject: SubjectModel, source: FeatureSource,
                    corpus: CorpusCounts) -> Callable[[FeatureRecord], Evidence]:
    """Token statistics plus the tokens a feature's direct logit effect promotes."""
    from tools.experiments.interventions import logit_tokens

    def evidence(record: FeatureRecord) -> Evidence:
        promoted, _ = logit_tokens(subject, source, record.feature, PROMOTED_TOKENS)
        return Evidence(token_statistics(record, corpus), promoted)

    return evidence
