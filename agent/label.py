"""`interp label`: explain and score every feature of a feature set, many at once, resumably.

Worker threads explain and score features (the LLM calls are where the time goes); the main thread is
the catalog's one writer and commits each feature, explanation and scores together, as soon as it is
done. A rerun with the same explainer, LLM and prompt skips features already labeled and scores only
what is missing, so an interrupted or partly failed run loses nothing it finished. A feature whose LLM
call still fails after the backend's retries is recorded as failed, with its error, and the run goes on.
"""

import dataclasses
import hashlib
import json
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from agent.explainers import Evidence, Explainer, OneShotExplainer, TokenStatsExplainer
from agent.llm import ChatLLM, LogitLLM, Usage, make_llm
from agent.token_stats import CorpusCounts, token_statistics
from evals.embedding import Embedder, EmbeddingScorer
from evals.records import FeatureRecord, feature_record
from evals.scorer import Scorer
from tools.catalog import Catalog
from tools.configs import LabelConfig
from tools.errors import FeatureFailure, InterpError, Interrupted
from tools.interrupts import stop_at_batch_boundary

PROMOTED_TOKENS = 10


@dataclass
class Labeler:
    """What a run uses on every feature, built once."""

    explainer: Explainer
    scorers: list[Scorer]
    embedder: Embedder


@dataclass
class FeatureOutcome:
    feature: int
    explanation: dict | None
    """The new explanations row, or None when an earlier run's explanation was reused."""
    scores: list[dict] = field(default_factory=list)
    usage: Usage = Usage()


def llm_backend(config: LabelConfig, spec: str) -> ChatLLM:
    llm = make_llm(spec, base_url=config.base_url, api_key_env=config.api_key_env, timeout=config.timeout,
                   max_retries=config.max_retries, concurrency=config.effective_concurrency(), device=config.device)
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

    def get(self, spec: str) -> ChatLLM:
        if spec not in self._built:
            self._built[spec] = self.factory(spec)
        return self._built[spec]

    def simulator(self) -> LogitLLM:
        spec = self.config.simulator or (self.config.llm if self.config.llm_is_local else "local")
        return self.get(spec)


def build_labeler(config: LabelConfig, backends: Backends,
                  evidence: Callable[[FeatureRecord], Evidence] | None = None,
                  corpus: CorpusCounts | None = None, explainer: Explainer | None = None) -> Labeler:
    """`explainer`, when given, replaces the one the config names (the planted eval's descriptions)."""
    if explainer is None and config.explainer == "token-stats":
        explainer = TokenStatsExplainer(corpus)
    elif explainer is None:
        explainer = OneShotExplainer(backends.get(config.llm), config.n_top, config.n_quantile, evidence)
    embedder = Embedder(config.embedder, device=config.device)
    return Labeler(explainer, build_scorers(config, backends, embedder), embedder)


def build_scorers(config: LabelConfig, backends: Backends, embedder: Embedder) -> list[Scorer]:
    from evals.detection import DetectionScorer
    from evals.fuzzing import FuzzingScorer
    from evals.simulation import AllAtOnceSimulator, SimulationScorer

    makers = {
        "simulation": lambda: SimulationScorer(AllAtOnceSimulator(backends.simulator())),
        # Judge calls of one feature go out together too; the backend's own limit caps the total in flight.
        "detection": lambda: DetectionScorer(backends.get(config.llm), parallel=config.effective_concurrency()),
        "fuzzing": lambda: FuzzingScorer(backends.get(config.llm), parallel=config.effective_concurrency()),
        "embedding": lambda: EmbeddingScorer(embedder),
    }
    return [makers[name]() for name in config.scorer_names()]


def explanation_row(explainer: Explainer, embedder: Embedder, set_id: str, feature: int, run_id: str,
                    text: str | None, error: str | None, usage: Usage) -> dict:
    """An explanations row, keyed by the explainer's name, LLM and prompt hash."""
    embedding = embedder.embed([text])[0].tolist() if text else None
    return {"explanation_id": uuid.uuid4().hex[:16], "feature_set_id": set_id, "feature": feature,
            "explainer": explainer.name, "llm": explainer.llm_name, "prompt_hash": explainer.prompt_hash,
            "status": "ok" if text else "failed", "text": text, "error": error,
            "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
            "embedding": embedding, "embedder": embedder.name if text else None, "run_id": run_id}


def score_rows(scorer: Scorer, explanation: str, record: FeatureRecord, explanation_id: str,
               run_id: str) -> tuple[list[dict], Usage]:
    base = {"explanation_id": explanation_id, "scorer": scorer.name, "llm": scorer.llm_name,
            "prompt_hash": scorer.prompt_hash, "run_id": run_id}
    try:
        result = scorer.score(explanation, record)
    except FeatureFailure as failure:
        return [base | {"metric": "", "status": "failed", "error": str(failure), "prompt_tokens": 0,
                        "completion_tokens": 0}], Usage()
    rows = []
    for index, score in enumerate(result.scores):
        # The scorer's token cost goes on its first row, so summing a column never counts it twice.
        cost = result.usage if index == 0 else Usage()
        rows.append(base | {"metric": score.metric, "status": "ok", "value": score.value, "n": score.n,
                            "ci_low": score.ci_low, "ci_high": score.ci_high, "details": json.dumps(score.details),
                            "prompt_tokens": cost.prompt_tokens, "completion_tokens": cost.completion_tokens})
    return rows, result.usage


def label_feature(labeler: Labeler, record: FeatureRecord, set_id: str, run_id: str, previous: dict | None,
                  scorers: list[Scorer]) -> FeatureOutcome:
    """Explain (unless `previous` already did) and run `scorers`; failures become rows, not exceptions."""
    if previous is None:
        def new_row(text: str | None, error: str | None, usage: Usage) -> dict:
            return explanation_row(labeler.explainer, labeler.embedder, set_id, record.feature, run_id, text, error,
                                   usage)

        try:
            explanation = labeler.explainer.explain(record)
        except FeatureFailure as failure:
            return FeatureOutcome(record.feature, new_row(None, str(failure), Usage()))
        row = new_row(explanation.text, None, explanation.usage)
        outcome = FeatureOutcome(record.feature, row, usage=explanation.usage)
        explanation_id, text = row["explanation_id"], explanation.text
    else:
        outcome = FeatureOutcome(record.feature, None)
        explanation_id, text = previous["explanation_id"], previous["text"]
    for scorer in scorers:
        rows, usage = score_rows(scorer, text, record, explanation_id, run_id)
        outcome.scores.extend(rows)
        outcome.usage = outcome.usage + usage
    return outcome


def special_token_ids(model_row: dict) -> set[int]:
    """BOS, separators and padding, to leave out of what an LLM reads."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_row["path"])
    except (OSError, ValueError) as error:
        raise InterpError(f"cannot load the tokenizer of model '{model_row['name']}' from {model_row['path']}: "
                          f"{str(error).splitlines()[0]}") from None
    return set(tokenizer.all_special_ids)


def corpus_counts(catalog: Catalog, set_id: str, special: set[int]) -> CorpusCounts:
    windows = catalog.random_windows(set_id)
    return CorpusCounts.from_windows([t for i, t in zip(ids, tokens, strict=True) if i not in special]
                                     for ids, tokens in windows)


def output_evidence(catalog_path: Path, set_id: str, corpus: CorpusCounts,
                    device: str) -> Callable[[FeatureRecord], Evidence]:
    """Token statistics plus the tokens a feature's direct logit effect promotes (loads the subject model)."""
    from tools.interventions import direct_logit_effect, load_feature_source

    subject, source, _ = load_feature_source(catalog_path, set_id, device)

    def evidence(record: FeatureRecord) -> Evidence:
        effect = direct_logit_effect(subject, source, record.feature)
        promoted = [subject.tokenizer.decode([int(i)]) for i in effect.topk(PROMOTED_TOKENS).indices]
        return Evidence(token_statistics(record.explain, corpus), promoted)

    return evidence


@dataclass(frozen=True)
class Work:
    feature: int
    previous: dict | None
    scorers: list[Scorer]


def target_features(catalog: Catalog, config: LabelConfig, set_id: str) -> list[int]:
    """--features as given, else the first --limit features that ever fired (all when no limit)."""
    chosen = config.feature_list()
    if chosen:
        n_features = catalog.feature_set(set_id)["n_features"]
        outside = [f for f in chosen if f >= n_features]
        if outside:
            raise InterpError(f"features {outside} are out of range; feature set {set_id} has features "
                              f"0..{n_features - 1}")
        return chosen
    live = catalog.live_features(set_id)
    return live[:config.limit] if config.limit else live


def plan(catalog: Catalog, labeler: Labeler, targets: list[int], set_id: str) -> list[Work]:
    """What is left to do: features without an explanation under this key, or missing some score."""
    explainer = labeler.explainer
    done = catalog.labeled(set_id, explainer.name, explainer.llm_name, explainer.prompt_hash)
    have = catalog.scored([row["explanation_id"] for row in done.values()])
    work = []
    for feature in targets:
        previous = done.get(feature)
        if previous is None:
            work.append(Work(feature, None, labeler.scorers))
            continue
        missing = [s for s in labeler.scorers
                   if (previous["explanation_id"], s.name, s.llm_name, s.prompt_hash) not in have]
        if missing:
            work.append(Work(feature, previous, missing))
    return work


def run_key(config: LabelConfig, set_id: str, labeler: Labeler) -> str:
    parts = [set_id, labeler.explainer.name, labeler.explainer.llm_name, labeler.explainer.prompt_hash]
    parts += [f"{s.name}:{s.llm_name}:{s.prompt_hash}" for s in labeler.scorers]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()[:16]


@dataclass
class LabelResult:
    feature_set_id: str
    run_id: str
    targets: list[int]
    """Every feature this run's flags name, including those an earlier run finished."""
    labeled: int
    failed: int
    usage: Usage
    labeler: Labeler
    seconds: float
    """Time spent labeling, after every model is loaded: what throughput is measured on."""


def run_label(config: LabelConfig, feature_set_ref: str, catalog_path: Path, progress: bool = True,
              llm_factory: LLMFactory | None = None, explainer: Explainer | None = None) -> LabelResult:
    config.validate()
    catalog_path = Path(catalog_path)
    # Everything the flags name is checked before any model loads or anything is written.
    with Catalog(catalog_path, read_only=True) as catalog:
        feature_set = catalog.feature_set(feature_set_ref)
        set_id = feature_set["feature_set_id"]
        targets = target_features(catalog, config, set_id)
        special = special_token_ids(catalog.model(feature_set["model_id"]))
        needs_counts = explainer is None and config.explainer in ("token-stats", "evidence")
        corpus = corpus_counts(catalog, set_id, special) if needs_counts else None
    wants_evidence = explainer is None and config.explainer == "evidence"
    evidence = output_evidence(catalog_path, set_id, corpus, config.device) if wants_evidence else None
    labeler = build_labeler(config, Backends(config, llm_factory), evidence, corpus, explainer)
    with Catalog(catalog_path) as catalog:
        work = plan(catalog, labeler, targets, set_id)
        run_id = catalog.start_run("label", dataclasses.asdict(config) | {"feature_set": set_id},
                                   run_key(config, set_id, labeler), None, {})
    print(f"config: {json.dumps(dataclasses.asdict(config))}", flush=True)
    print(f"labeling {len(work)} of {len(targets)} features of {set_id} with {labeler.explainer.name}"
          f"{' (' + labeler.explainer.llm_name + ')' if labeler.explainer.llm_name else ''}; scorers: "
          f"{', '.join(s.name for s in labeler.scorers) or 'none'}; run {run_id}", flush=True)
    totals = {"labeled": 0, "failed": 0, "usage": Usage()}
    started = time.perf_counter()
    try:
        label_all(config, catalog_path, set_id, special, labeler, work, run_id, totals, progress)
    except (Interrupted, KeyboardInterrupt):
        with Catalog(catalog_path) as catalog:
            catalog.set_run_status(run_id, "interrupted")
        raise Interrupted("interrupted; finished features are saved, rerun the same command to label the rest") \
            from None
    except Exception as error:
        with Catalog(catalog_path) as catalog:
            catalog.set_run_status(run_id, "failed", f"{type(error).__name__}: {error}")
        raise
    with Catalog(catalog_path) as catalog:
        catalog.set_run_status(run_id, "complete")
    return LabelResult(set_id, run_id, targets, totals["labeled"], totals["failed"], totals["usage"], labeler,
                       time.perf_counter() - started)


def read_record(catalog: Catalog, set_id: str, feature: int, special: set[int], score_active: int,
                score_random: int) -> FeatureRecord:
    return feature_record(feature, catalog.feature(set_id, feature)["max_act"], catalog.examples(set_id, feature),
                          special, score_active, score_random)


def label_all(config: LabelConfig, catalog_path: Path, set_id: str, special: set[int], labeler: Labeler,
              work: list[Work], run_id: str, totals: dict, progress: bool) -> None:
    """Keeps `concurrency` features in flight. The calling thread is the catalog's one writer: each time
    features finish it opens the catalog once, commits each finished feature and reads the examples of
    the next ones, and closes it again, so other processes can read between its writes."""
    queue = list(reversed(work))
    started = time.monotonic()
    bar = tqdm(total=len(work), unit="feature", disable=not progress, desc="label")
    in_flight: dict[Future, int] = {}
    finished: list[Future] = []
    with bar, ThreadPoolExecutor(config.effective_concurrency()) as pool, stop_at_batch_boundary() as request:
        try:
            while True:
                if request["stop"]:
                    queue.clear()
                refill = [queue.pop() for _ in range(min(len(queue), config.effective_concurrency() - len(in_flight)))]
                if finished or refill:
                    with Catalog(catalog_path) as catalog:
                        for future in finished:
                            write_outcome(catalog, future.result(), totals)
                        records = [(item, read_record(catalog, set_id, item.feature, special,
                                                               config.score_active, config.score_random))
                                   for item in refill]
                    if finished:
                        bar.update(len(finished))
                        minutes = (time.monotonic() - started) / 60
                        bar.set_postfix_str(f"{bar.n / minutes:.1f} features/min, "
                                            f"{totals['usage'].total:,} LLM tokens")
                    for item, record in records:
                        future = pool.submit(label_feature, labeler, record, set_id, run_id, item.previous,
                                             item.scorers)
                        in_flight[future] = item.feature
                if not in_flight:
                    break
                done, _ = wait(in_flight, timeout=0.5, return_when=FIRST_COMPLETED)
                finished = list(done)
                for future in finished:
                    del in_flight[future]
        except BaseException:
            for future in in_flight:
                future.cancel()
            raise
    if request["stop"]:
        raise Interrupted("interrupted")


def write_outcome(catalog: Catalog, outcome: FeatureOutcome, totals: dict) -> None:
    catalog.record_label(outcome.explanation, outcome.scores)
    failed = outcome.explanation is not None and outcome.explanation["status"] == "failed"
    totals["failed" if failed else "labeled"] += 1
    totals["usage"] = totals["usage"] + outcome.usage
