"""`interp label`: explain and score every feature of a feature set, many at once, resumably.

Worker threads explain and score features (the LLM calls are where the time goes); the main thread is
the catalog's one writer and commits each feature, explanation and scores together, as soon as it is
done. A rerun with the same explainer, LLM and prompt skips features already labeled and scores only
what is missing, so an interrupted or partly failed run loses nothing it finished. A feature whose LLM
call still fails after the backend's retries is recorded as failed, with its error, and the run goes on.
"""

import hashlib
import json
import logging
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tqdm import tqdm

from agent.labeling.backends import Backends, Labeler, LLMFactory, build_labeler, model_side, output_evidence, roles
from agent.labeling.config import LabelConfig
from agent.labeling.explainers import Explainer, OutputExplainer, RecordedExplainer
from agent.labeling.process_tuning import fewer_collections, torch_threads
from agent.labeling.records import corpus_counts, read_records, special_token_ids
from agent.labeling.rows import label_feature
from agent.labeling.writer import LabelWriter, Totals
from evals.scorers.base import Scorer
from evals.scorers.embedding import Embedder, EmbeddingScorer
from tools.catalog import Catalog
from tools.errors import InterpError, Interrupted
from tools.experiments.steering import Steerer
from tools.interrupts import stop_at_batch_boundary
from tools.llm.interface import Usage

if TYPE_CHECKING:
    from agent.labeling.token_stats import CorpusCounts
    from tools.ray_workers import RaySettings

log = logging.getLogger(__name__)
REFILL_FRACTION = 8
"""The next features are read once this fraction of the slots is free (or none is in flight), so the
catalog answers one query for many features instead of one for each."""


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


def recorded_explanations(catalog: Catalog, config: LabelConfig, set_id: str) -> tuple[RecordedExplainer, list[int]]:
    """--score-only: the explainer the flag names, keyed as it wrote, and the features it explained (within
    --features or the first --limit of them)."""
    keys = catalog.explainer_keys(set_id, config.score_only)
    if not keys:
        raise InterpError(f"--score-only: no explanations by '{config.score_only}' in feature set {set_id}; "
                          f"explainers there: {', '.join(catalog.explainers(set_id)) or 'none'}")
    if len(keys) > 1:
        raise InterpError(f"--score-only: '{config.score_only}' wrote under {len(keys)} LLMs or prompts "
                          f"({', '.join(llm or 'no LLM' for llm, _ in keys)}); score them one run at a time")
    (llm, prompt_hash), = keys
    explainer = RecordedExplainer(config.score_only, llm, prompt_hash)
    written = sorted(catalog.labeled(set_id, explainer.name, llm, prompt_hash))
    chosen = config.feature_list()
    explained = set(written)
    targets = [f for f in chosen if f in explained] if chosen else written[:config.limit or None]
    return explainer, targets


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


@dataclass
class Prepared:
    """Everything a run needs before it writes anything: what the flags name, checked, and the labeler."""

    set_id: str
    targets: list[int]
    special: set[int]
    labeler: Labeler
    work: list[Work]
    corpus: "CorpusCounts | None" = None
    """The corpus's token counts, when the explainer reads them (Ray actors get them from here)."""
    torch_threads: int | None = None
    """1 when the only model in this process is the explanation embedder (every LLM behind an endpoint):
    its small batches gain nothing from a second thread, which spins on a core the endpoint's client needs
    (measured: 72 -> 56 ms of CPU per feature in benchmarks/label_capacity.py). None: leave torch's."""


def prepare(config: LabelConfig, feature_set_ref: str, catalog_path: Path, llm_factory: LLMFactory | None = None,
            explainer: Explainer | None = None) -> Prepared:
    config.validate()
    # Everything the flags name is checked before any model loads or anything is written.
    with Catalog(catalog_path, read_only=True) as catalog:
        feature_set = catalog.feature_set(feature_set_ref)
        set_id = feature_set["feature_set_id"]
        if config.score_only:
            explainer, targets = recorded_explanations(catalog, config, set_id)
        else:
            targets = target_features(catalog, config, set_id)
        special = special_token_ids(catalog.model(feature_set["model_id"]))
        needs_counts = explainer is None and config.explainer in ("token-stats", "evidence")
        corpus = corpus_counts(catalog, set_id, special) if needs_counts else None
    evidence, steerer = None, None
    uses_model = explainer is None and config.explainer in ("evidence", *OutputExplainer.MODES)
    if uses_model or "intervention" in config.scorer_names():
        subject, source = model_side(catalog_path, set_id, config.device)
        if explainer is None and config.explainer == "evidence":
            assert corpus is not None  # the evidence explainer needs the counts, read above
            evidence = output_evidence(subject, source, corpus)
        steerer = Steerer(subject, source)
    backends = Backends(config, llm_factory)
    labeler = build_labeler(config, backends, evidence, corpus, explainer, steerer)
    with Catalog(catalog_path, read_only=True) as catalog:
        work = plan(catalog, labeler, targets, set_id)
    only_embedder = steerer is None and evidence is None and not backends.any_in_process()
    return Prepared(set_id, targets, special, labeler, work, corpus, 1 if only_embedder else None)


def run_label(config: LabelConfig, feature_set_ref: str, catalog_path: Path, progress: bool = True,
              llm_factory: LLMFactory | None = None, explainer: Explainer | None = None,
              ray: "RaySettings | None" = None) -> LabelResult:
    """With `ray`, features are labeled by Ray actors (agent/labeling/ray_pool.py); this process still reads,
    writes and keeps the accounts."""
    catalog_path = Path(catalog_path)
    if ray is not None:
        from agent.labeling.ray_pool import check_ray_config
        from tools.ray_workers import require_ray

        check_ray_config(config)
        require_ray()
    prepared = prepare(config, feature_set_ref, catalog_path, llm_factory, explainer)
    set_id, targets, special, labeler, work = (prepared.set_id, prepared.targets, prepared.special, prepared.labeler,
                                               prepared.work)
    totals = Totals()
    try:
        recorded = config.recorded()
        with Catalog.run(catalog_path, "label", recorded | {"feature_set": set_id},
                         run_key(config, set_id, labeler)) as run_id:
            log.info(f"config: {json.dumps(recorded)}")
            log.info(f"labeling {len(work)} of {len(targets)} features of {set_id} with {labeler.explainer.name}"
                     f"{' (' + labeler.explainer.llm_name + ')' if labeler.explainer.llm_name else ''}; scorers: "
                     f"{', '.join(s.name for s in labeler.scorers) or 'none'}; run {run_id}")
            for line in roles(labeler):
                log.info(f"  {line}")
            started = time.perf_counter()
            def threads() -> Any:
                return ThreadPoolExecutor(config.effective_concurrency())

            def actors() -> Any:
                from agent.labeling.ray_pool import RayPool

                assert ray is not None
                return RayPool(config, ray, prepared.corpus, config.effective_concurrency())

            with torch_threads(prepared.torch_threads), fewer_collections():
                label_all(config, catalog_path, set_id, special, labeler, work, run_id, totals, progress,
                          actors if ray is not None else threads)
    except (Interrupted, KeyboardInterrupt):
        raise Interrupted("interrupted; finished features are saved, rerun the same command to label the rest") \
            from None
    return LabelResult(set_id, run_id, targets, totals.labeled, totals.failed, totals.usage, labeler,
                       time.perf_counter() - started)


def reuse_explanation_vectors(catalog: Catalog, refill: list[Work], embedder: Embedder) -> None:
    """The stored vectors of the explanations these features keep, when the embedding scorer is still to
    score them: the scorer then embeds only the excerpts."""
    kept = [item.previous["explanation_id"] for item in refill if item.previous is not None
            and any(isinstance(scorer, EmbeddingScorer) for scorer in item.scorers)]
    if kept:
        embedder.remember(catalog.explanation_vectors(kept, embedder.name))


def label_all(config: LabelConfig, catalog_path: Path, set_id: str, special: set[int], labeler: Labeler,
              work: list[Work], run_id: str, totals: Totals, progress: bool,
              make_pool: Callable[[], Any] | None = None) -> None:
    """Keeps `concurrency` features in flight. The calling thread is the catalog's one writer: it reads the
    next features' examples together when a batch of slots is free, and commits finished features in
    batches (`LabelWriter`). `make_pool`: what runs the features (threads here, or Ray actors)."""
    queue = list(reversed(work))
    started = time.monotonic()
    bar = tqdm(total=len(work), unit="feature", disable=not progress, desc="label")
    concurrency = config.effective_concurrency()
    refill_from = max(1, concurrency // REFILL_FRACTION)
    in_flight: dict[Future, int] = {}
    writer = LabelWriter(catalog_path, labeler.embedder, totals)
    pool_context = make_pool() if make_pool is not None else ThreadPoolExecutor(concurrency)
    with bar, pool_context as pool, stop_at_batch_boundary() as request:
        try:
            while True:
                if request["stop"]:
                    queue.clear()
                free = min(len(queue), concurrency - len(in_flight))
                if free and (free >= refill_from or not in_flight):
                    refill = [queue.pop() for _ in range(free)]
                    records = read_records(writer.catalog(), set_id, [item.feature for item in refill], special,
                                           config.score_active, config.score_random)
                    reuse_explanation_vectors(writer.catalog(), refill, labeler.embedder)
                    for item, record in zip(refill, records, strict=True):
                        future = pool.submit(label_feature, labeler, record, set_id, run_id, item.previous,
                                             item.scorers)
                        in_flight[future] = item.feature
                if writer.due() or (writer.pending and not in_flight):
                    bar.update(writer.flush())
                    minutes = (time.monotonic() - started) / 60
                    bar.set_postfix_str(f"{bar.n / minutes:.1f} features/min, {totals.usage.total:,} LLM tokens")
                writer.release_if_held()
                if not in_flight:
                    break
                done, _ = wait(in_flight, timeout=writer.seconds_to_due(), return_when=FIRST_COMPLETED)
                writer.add([future.result() for future in done])
                for future in done:
                    del in_flight[future]
        except BaseException:
            for future in in_flight:
                future.cancel()
            writer.salvage()
            raise
        writer.close()
    if request["stop"]:
        raise Interrupted("interrupted")
