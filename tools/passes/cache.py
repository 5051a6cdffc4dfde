"""The caching pass: stream a corpus through the subject model once and keep, for every feature of a
hook, its top windows, quantile samples, random negatives and statistics, then record them.

Resume: the streaming state is checkpointed beside the catalog (`<catalog>.runs/<run_id>.pt`) every
`checkpoint_seconds` and on Ctrl-C. Rerunning the same command finds the unfinished run by its
config hash and continues from the last checkpoint; every random draw is seeded by (seed, batch
index), or by the seed alone for the random negatives planned before the pass, so a resumed run keeps
exactly what an uninterrupted one would.
"""

import dataclasses
import hashlib
import importlib.metadata
import json
import logging
import math
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute
import torch
from tqdm import tqdm

from tools.catalog import RESUMABLE, Catalog, FeatureSetRows, check_catalog_path, runs_folder
from tools.configs import CacheConfig, SAEEvalConfig, TrainConfig
from tools.data.corpus import CorpusSpec, describe, documents_in_part, iter_documents, shuffled
from tools.data.streaming import NO_KEY, KeepLargest, quantile_samples
from tools.data.windows import resolve_prepend_bos, token_strings, token_windows
from tools.errors import InterpError, Interrupted
from tools.features import FeatureSource, resolve_features
from tools.interrupts import StopRequested, stop_at_batch_boundary
from tools.model.hooks import n_layers
from tools.model.subject import SubjectModel, load_subject_model
from tools.passes.cache_state import CacheState, fold_batch, load_checkpoint, save_checkpoint

if TYPE_CHECKING:
    from tools.ray_workers import RaySettings

RECORDED_PACKAGES = ("interp-agent", "torch", "transformers", "duckdb", "numpy", "tokenizers")
log = logging.getLogger(__name__)


@dataclass
class CacheResult:
    feature_set_id: str
    run_id: str
    tokens: int
    resumed: bool
    already_done: bool


def package_versions() -> dict[str, str]:
    versions = {}
    for name in RECORDED_PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = "not installed"
    versions["python"] = sys.version.split()[0]
    return versions


def checkpoint_path(catalog_path: Path, run_id: str) -> Path:
    return runs_folder(catalog_path) / f"{run_id}.pt"


def split_for(ranks: np.ndarray) -> list[str]:
    """Alternate ranks between explaining and scoring, so both splits span the activation range."""
    return np.where(ranks % 2 == 0, "explain", "score").tolist()


def bucket_table(bucket: str, buffer: KeepLargest, features: np.ndarray, slots: np.ndarray, ranks: np.ndarray,
                 quantiles: np.ndarray | None, acts: np.ndarray) -> pa.Table:
    """Examples of one bucket: buffer slot (features[i], slots[i]), whose per-token values are acts[i]
    ([n, seq]), becomes the example of rank ranks[i]."""
    return pa.table({
        "feature": pa.array(features, pa.int32()),
        "bucket": pa.array([bucket] * len(features), pa.string()),  # typed: a bucket may be empty
        "rank": pa.array(ranks, pa.int32()),
        "quantile": pa.array(quantiles, pa.int32()) if quantiles is not None else pa.nulls(len(features), pa.int32()),
        "split": pa.array(split_for(ranks), pa.string()),
        "window_id": pa.array(buffer.window_ids[features, slots].numpy(), pa.int32()),
        "max_act": pa.array(buffer.maxes[features, slots].numpy(), pa.float32()),
        "acts": pa.FixedSizeListArray.from_arrays(acts.reshape(-1), acts.shape[1]).cast(pa.list_(pa.float32())),
    })


def filled_slots(buffer: KeepLargest, limit: int) -> tuple[np.ndarray, np.ndarray]:
    """(feature, slot) of every filled slot among the first `limit` of an ordered buffer."""
    features, slots = (buffer.keys[:, :limit] > NO_KEY).nonzero(as_tuple=True)
    return features.numpy(), slots.numpy()


FEATURE_CHUNK = 1 << 15
"""Features whose examples are built (and written) together: a 1M-latent set never holds all its examples'
per-token values at once."""


def ordered_chunk(buffer: KeepLargest, start: int, end: int) -> KeepLargest:
    return buffer._replaced({name: tensor[start:end] for name, tensor in buffer.state_dict().items()}).ordered().to(
        "cpu")


def build_rows(state: CacheState, config: CacheConfig, windows: torch.Tensor, subject: SubjectModel,
               feature_set: dict, run_id: str) -> FeatureSetRows:
    """Turn the final state into catalog rows: one per feature, per kept window, per example. Examples come
    `FEATURE_CHUNK` features at a time, as the catalog writes them; the windows table, made after them,
    holds the windows some example kept."""
    n_features = state.top.keys.shape[0]
    set_id = feature_set["feature_set_id"]
    chunks = [(start, min(start + FEATURE_CHUNK, n_features)) for start in range(0, n_features, FEATURE_CHUNK)]
    # Sampled from each chunk's reservoir ordered as the examples will read it (ordering is deterministic).
    samples = [quantile_samples(ordered.maxes, ordered.keys, config.quantiles, config.per_quantile)
               for ordered in (ordered_chunk(state.reservoir, start, end) for start, end in chunks)]
    kept = np.zeros(len(windows), dtype=bool)

    def example_chunks() -> Iterator[pa.Table]:
        for (start, end), sample in zip(chunks, samples, strict=True):
            top, reservoir, random = (ordered_chunk(b, start, end) for b in (state.top, state.reservoir, state.random))
            top_features, top_slots = filled_slots(top, config.top_k)
            random_features, random_slots = filled_slots(random, config.random)
            sample_features, sample_slots = sample.features.numpy(), sample.slots.numpy()
            examples = pa.concat_tables([
                bucket_table("top", top, top_features, top_slots, top_slots, None,
                             state.values(top, top_features, top_slots, start)),
                bucket_table("quantile", reservoir, sample_features, sample_slots, sample.ranks.numpy(),
                             sample.quantiles.numpy(), state.values(reservoir, sample_features, sample_slots, start)),
                bucket_table("random", random, random_features, random_slots, random_slots, None,
                             state.values(random, random_features, random_slots, start)),
            ])
            examples = examples.set_column(0, "feature", pa.compute.add(examples.column("feature"),
                                                                         pa.scalar(start, pa.int32())))
            kept[examples.column("window_id").to_numpy()] = True
            yield with_provenance(examples, set_id, run_id)

    def windows_table() -> pa.Table:
        ids = np.flatnonzero(kept)
        memo: dict[int, str] = {}
        token_ids = windows[torch.from_numpy(ids).long()].tolist()
        return with_provenance(pa.table({
            "window_id": pa.array(ids, pa.int32()),
            "token_ids": token_ids,
            "tokens": [token_strings(window, subject.tokenizer, memo) for window in token_ids],
        }), set_id, run_id)

    stats = state.stats
    n_tokens = int(stats.n_tokens)
    edges = torch.cat([sample.edges for sample in samples]) if samples else torch.zeros((0, config.quantiles + 1))
    counts = stats.hist_counts.cpu().numpy()
    features = with_provenance(pa.table({
        "feature": pa.array(np.arange(n_features), pa.int32()),
        "max_act": stats.max.cpu().numpy(),
        "min_act": stats.min.cpu().numpy(),
        "mean_act": (stats.total / max(n_tokens, 1)).cpu().numpy(),
        "density": (stats.active.double() / max(n_tokens, 1)).cpu().numpy(),
        "window_density": (stats.active_windows.double() / max(int(stats.n_windows), 1)).cpu().numpy(),
        "n_tokens": pa.array(np.full(n_features, n_tokens, dtype=np.int64)),
        "hist_max": stats.hist_range.cpu().numpy(),
        "hist_counts": pa.FixedSizeListArray.from_arrays(counts.reshape(-1), counts.shape[1]).cast(
            pa.list_(pa.int64())),
        "quantile_edges": [[] if math.isnan(row[0]) else row for row in edges.tolist()],  # never active
    }), set_id, run_id)
    return FeatureSetRows(feature_set, features, windows_table, example_chunks())


def with_provenance(table: pa.Table, set_id: str, run_id: str) -> pa.Table:
    """Every catalog row names its feature set and the run that made it."""
    table = table.add_column(0, "feature_set_id", pa.array([set_id] * table.num_rows, pa.string()))
    return table.append_column("run_id", pa.array([run_id] * table.num_rows, pa.string()))


def prepare_windows(config: CacheConfig | SAEEvalConfig | TrainConfig, subject: SubjectModel,
                    part: str = "all") -> torch.Tensor:
    """The run's token windows, from the corpus `part` (all, train or held_out; see tools.data.corpus)."""
    prepend_bos = resolve_prepend_bos(config.bos, subject.tokenizer)
    documents = documents_in_part(iter_documents(CorpusSpec(config.corpus, config.text_column)), part)
    documents = shuffled(documents, config.seed)
    windows = token_windows(documents, subject.tokenizer, config.window, prepend_bos, config.tokens)
    if len(windows) == 0:
        raise InterpError(f"corpus '{config.corpus}' holds fewer than {config.window} tokens of text; nothing to cache")
    return windows


def checked_inputs(config: CacheConfig | SAEEvalConfig, catalog_path: Path) -> tuple[dict, SubjectModel,
                                                                                    FeatureSource]:
    """Everything a run reads, validated before anything is written: the config, the catalog path,
    the corpus (described), the model (loaded) and its features (hook, and SAE when given)."""
    config.validate()
    check_catalog_path(catalog_path)
    corpus = describe(CorpusSpec(config.corpus, config.text_column))
    subject = load_subject_model(config.model, config.device, config.dtype)
    return corpus, subject, resolve_features(config.hook, config.sae, subject)


def run_cache(config: CacheConfig, catalog_path: Path, progress: bool = True, ray: "RaySettings | None" = None) -> \
        CacheResult:
    """Validate everything, then stream (here, or on Ray workers with `ray`), then write. Any bad input fails
    before the catalog is touched."""
    if ray is None:
        return cache_pass(config, Path(catalog_path), progress)
    from tools.passes.cache_ray import start_workers
    from tools.ray_workers import stop_workers

    workers = start_workers(config, ray)  # their models load while this process loads its own
    try:
        return cache_pass(config, Path(catalog_path), progress, ray, workers)
    finally:
        stop_workers(workers)


def cache_pass(config: CacheConfig, catalog_path: Path, progress: bool, ray: "RaySettings | None" = None,
               workers: list | None = None) -> CacheResult:
    corpus, subject, source = checked_inputs(config, catalog_path)
    windows = prepare_windows(config, subject)
    n_windows = len(windows)
    n_tokens_planned = n_windows * config.window
    # Same flags on changed weights or changed text are a different run: never resume or skip across them.
    run_key = f"{config.results_hash()}:{subject.sha256}:{corpus['sha256']}:{source.sha256}"
    config_hash = hashlib.sha256(run_key.encode()).hexdigest()[:16]
    log.info(f"config: {json.dumps(dataclasses.asdict(config))}")
    log.info(f"caching {source.width} {source.kind} features at {source.hook_name} of {config.model} on "
             f"{n_tokens_planned:,} tokens ({n_windows:,} windows of {config.window}) from '{config.corpus}' on "
             f"{subject.device} ({subject.dtype}); run key {config_hash}")
    if n_tokens_planned < config.tokens - config.window:
        log.info(f"note: the corpus ran out before the {config.tokens:,}-token budget")

    with Catalog(catalog_path) as catalog:
        previous = catalog.find_run("cache", config_hash)
        if previous and previous["status"] == "complete":
            set_id = catalog.feature_set_of_run(previous["run_id"])
            log.info(f"already cached by run {previous['run_id']}: feature set {set_id}")
            return CacheResult(set_id, previous["run_id"], previous["tokens"], resumed=False, already_done=True)
    checkpoint = checkpoint_path(catalog_path, previous["run_id"]) if previous else None
    resumed = bool(checkpoint and checkpoint.exists())
    resume = previous["run_id"] if previous and (resumed or previous["status"] in RESUMABLE) else None
    state = CacheState(config, source.width, n_windows, subject.device, sparse=source.sparse)
    set_id = f"{source.name}-{config_hash[:8]}"
    with Catalog.run(catalog_path, "cache", dataclasses.asdict(config), config_hash, corpus, package_versions(),
                     resume=resume) as run_id:
        checkpoint = checkpoint_path(catalog_path, run_id)
        if resumed and ray is None:  # a Ray run resumes from its finished shards instead
            try:
                state.load_state_dict(load_checkpoint(checkpoint, subject.device))
            except (ValueError, KeyError) as error:
                raise InterpError(f"resume checkpoint '{checkpoint}' does not fit this run ({error}); delete it to "
                                  "start the run over") from None
            log.info(f"resuming run {run_id} at window {state.next_batch * config.batch_size:,} of {n_windows:,}")
        try:
            if ray is None:
                stream(config, subject, source, windows, state, checkpoint, progress)
            else:
                from tools.passes.cache_ray import stream_on_ray

                stream_on_ray(config, windows, state, ray, workers or [], catalog_path, run_id, progress,
                              source.hook_name)
            rows = build_rows(state, config, windows, subject,
                              feature_set_row(subject, source, config, set_id, n_windows, run_id), run_id)
            with Catalog(catalog_path) as catalog:
                catalog.record_model(model_row(subject, run_id))
                n_examples = catalog.finish_feature_set(run_id, n_tokens_planned, rows)
        except (StopRequested, KeyboardInterrupt) as stop:
            # StopRequested comes at a batch boundary, already checkpointed. A bare KeyboardInterrupt (a second
            # Ctrl-C, or one while writing) may cut a batch in half: its state is saved only once streaming is
            # done.
            if isinstance(stop, KeyboardInterrupt) and state.streamed(n_windows, config.batch_size):
                save_checkpoint(checkpoint, state.state_dict())
            raise Interrupted("interrupted; rerun the same command to resume from the last checkpoint") from None
        except Exception:
            # Our bug or the machine's (out of memory, a device error, a catalog held too long): the run is
            # marked failed; the last checkpoint stays (a finished stream is saved whole), so a rerun resumes.
            if state.streamed(n_windows, config.batch_size):
                save_checkpoint(checkpoint, state.state_dict())
            raise
    checkpoint.unlink(missing_ok=True)
    if ray is not None:
        from tools.passes.cache_ray import forget_shards

        forget_shards(catalog_path, run_id)
    log.info(f"feature set {set_id}: {source.width} features, {n_examples:,} examples, run {run_id}")
    return CacheResult(set_id, run_id, n_tokens_planned, resumed=resumed, already_done=False)


def feature_set_row(subject: SubjectModel, source: FeatureSource, config: CacheConfig, set_id: str, n_windows: int,
                    run_id: str) -> dict:
    return {
        "feature_set_id": set_id, "model_id": subject.sha256, "hook": source.hook_name,
        "hf_module": source.hf_module(subject.model), "kind": source.kind, "n_features": source.width,
        "window_length": config.window, "n_windows": n_windows, "tokens": n_windows * config.window,
        "source_path": source.path, "source_sha256": source.sha256, "run_id": run_id}


def model_row(subject: SubjectModel, run_id: str) -> dict:
    config = subject.model.config
    return {
        "model_id": subject.sha256, "name": subject.name, "path": subject.path,
        "architecture": type(subject.model).__name__, "n_layers": n_layers(subject.model),
        "d_model": int(config.hidden_size), "config": config.to_json_string(), "run_id": run_id}


def stream(config: CacheConfig, subject: SubjectModel, source: FeatureSource, windows: torch.Tensor,
           state: CacheState, checkpoint: Path, progress: bool) -> None:
    n_batches = -(-len(windows) // config.batch_size)
    done_tokens = min(state.next_batch * config.batch_size, len(windows)) * config.window
    bar = tqdm(total=len(windows) * config.window, initial=done_tokens, unit="tok", unit_scale=True,
               disable=not progress, desc=source.hook_name, smoothing=0.1)
    last_save = time.monotonic()
    with bar, stop_at_batch_boundary() as request:
        for batch_index in range(state.next_batch, n_batches):
            folded = fold_batch(config, subject, source, windows, state, batch_index, len(windows))
            state.next_batch = batch_index + 1
            bar.update(folded * config.window)
            if request["stop"]:
                save_checkpoint(checkpoint, state.state_dict())
                raise StopRequested
            if time.monotonic() - last_save > config.checkpoint_seconds:
                save_checkpoint(checkpoint, state.state_dict())
                last_save = time.monotonic()

