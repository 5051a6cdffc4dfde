"""`interp cache --ray`: the caching pass's forward passes spread over Ray workers, with exactly the result one
process gives.

Ray actors (one per worker, a GPU each when there are GPUs) load the subject model when the run starts, while
the driver loads its own copy and tokenizes the corpus into the pass's windows as always. The batches are cut
into one contiguous shard per worker; each actor folds its shard into a state of its own, reporting progress,
and returns it. Every random draw is keyed by the batch's global index and the random negatives are planned
from the seed alone, so which worker folds a batch changes nothing. The driver merges the shards' states in
window order (top-k and reservoirs keep the largest keys of both, equal keys ranked by window; counts and sums
add; histograms regrid to the wider power-of-two range) and writes the catalog as the single-process pass does.

An actor whose process dies is restarted by Ray and its shard folded again (the same batches, the same draws).
Each finished shard's state is saved beside the catalog, so an interrupted run resumes with the shards it
lacks. Sums of activations (mean_act) are added in another order than one pass adds them, so they can differ
in the last bits; everything else is identical.
"""

import time
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from tools.catalog import runs_folder
from tools.configs import CacheConfig
from tools.passes.cache_state import load_checkpoint, save_checkpoint
from tools.ray_workers import RaySettings, die_once_for_tests, start_ray

PROGRESS_SECONDS = 1.0
SHARDS_PER_WORKER = 1
"""A shard's state is as large as the whole pass's (features x slots), whatever its tokens: every extra shard
is one more state to send and merge (at 2,048 neurons, 4 shards a worker made merging 9% of the pass)."""


def shard_ranges(n_batches: int, n_shards: int) -> list[tuple[int, int]]:
    """Contiguous [first, last) batch ranges, as even as they come."""
    n_shards = max(1, min(n_shards, n_batches))
    bounds = [round(i * n_batches / n_shards) for i in range(n_shards + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(n_shards) if bounds[i] < bounds[i + 1]]


class ShardWorker:
    """A Ray actor: loads the subject model and features once, when the run starts (while the driver loads its
    own copy and tokenizes), then folds the shards it is handed. Restarted and its call retried by Ray if
    its process dies: a shard's state depends on nothing but the shard."""

    def __init__(self, config: CacheConfig, threads: int):
        from tools.features import resolve_features
        from tools.model.subject import load_subject_model

        torch.set_num_threads(threads)
        self.config = config
        self.subject = load_subject_model(config.model, config.device, config.dtype)
        self.source = resolve_features(config.hook, config.sae, self.subject)

    def fold(self, first_batch: int, last_batch: int, windows: torch.Tensor, first_window: int,
             n_windows: int, progress=None) -> dict:
        """Batches [first_batch, last_batch) folded into a fresh state, returned on the CPU; the tokens folded
        are put on the `progress` queue about once a second."""
        from tools.passes.cache_state import CacheState, fold_batch

        state = CacheState(self.config, self.source.width, n_windows, self.subject.device, sparse=self.source.sparse)
        reported, unreported = time.monotonic(), 0
        with torch.inference_mode():
            for batch_index in range(first_batch, last_batch):
                unreported += fold_batch(self.config, self.subject, self.source, windows, state, batch_index,
                                         n_windows, first_window) * self.config.window
                die_once_for_tests()
                if progress is not None and time.monotonic() - reported > PROGRESS_SECONDS:
                    progress.put_nowait(unreported)
                    reported, unreported = time.monotonic(), 0
        return cpu(state.state_dict())


def start_workers(config: CacheConfig, settings: RaySettings) -> list:
    """The run's actors, created at once so their models load while the driver prepares the pass."""
    ray = start_ray(settings)
    gpus = 1 if torch.cuda.is_available() and config.device in ("auto", "cuda") else 0
    worker = ray.remote(num_cpus=settings.threads, num_gpus=gpus, max_restarts=2, max_task_retries=2)(ShardWorker)
    return [worker.remote(config, settings.threads) for _ in range(settings.workers)]


def cpu(state: Any) -> Any:
    if isinstance(state, torch.Tensor):
        return state.cpu()
    if isinstance(state, dict):
        return {key: cpu(value) for key, value in state.items()}
    return state


def shard_path(catalog_path: Path, run_id: str, shard: int, n_shards: int) -> Path:
    return runs_folder(catalog_path) / f"{run_id}.shard-{shard}-of-{n_shards}.pt"


def stream_on_ray(config: CacheConfig, windows: torch.Tensor, state, settings: RaySettings, workers: list,
                  catalog_path: Path, run_id: str, progress: bool, hook_name: str) -> None:
    """Fill `state` (fresh) with the whole pass, folded by the `workers` and merged here in window order."""
    ray = start_ray(settings)
    n_windows = len(windows)
    n_batches = -(-n_windows // config.batch_size)
    shards = shard_ranges(n_batches, len(workers) * SHARDS_PER_WORKER)
    window_range = [(first * config.batch_size, min(last * config.batch_size, n_windows)) for first, last in shards]
    done: dict[int, dict] = {}
    for index in range(len(shards)):
        path = shard_path(catalog_path, run_id, index, len(shards))
        if path.exists():
            done[index] = load_checkpoint(path, "cpu")
    from ray.util.queue import Empty, Queue

    folded = Queue() if progress else None  # tokens folded, from every worker: the bar's tokens/s are the pool's
    pending = {workers[index % len(workers)].fold.remote(first, last, windows[low:high].clone(), low, n_windows,
                                                         folded): index
               for index, ((first, last), (low, high)) in enumerate(zip(shards, window_range, strict=True))
               if index not in done}

    def finished_tokens() -> int:
        return sum(high - low for index, (low, high) in enumerate(window_range) if index in done) * config.window

    bar = tqdm(total=n_windows * config.window, initial=finished_tokens(), unit="tok", unit_scale=True,
               disable=not progress, desc=f"{hook_name} on {len(workers)} Ray workers")
    try:
        with bar:
            while pending:
                finished, _ = ray.wait(list(pending), num_returns=1, timeout=PROGRESS_SECONDS)
                while folded is not None:
                    try:
                        bar.update(folded.get_nowait())
                    except Empty:
                        break
                for ref in finished:
                    index = pending.pop(ref)
                    done[index] = ray.get(ref)
                    save_checkpoint(shard_path(catalog_path, run_id, index, len(shards)), done[index])
                # A shard's exact tokens count once it is done (queued reports may lag or repeat after a retry).
                bar.n = min(bar.total, max(bar.n, finished_tokens()))
                bar.refresh()
        if folded is not None:
            folded.shutdown()
    finally:
        for ref in pending:
            ray.cancel(ref)  # the actors are killed after; force is for tasks, not actor calls
    for index, (low, high) in enumerate(window_range):
        state.merge_state_dict(done[index], low, high)
    state.next_batch = n_batches


def forget_shards(catalog_path: Path, run_id: str) -> None:
    for path in runs_folder(catalog_path).glob(f"{run_id}.shard-*.pt"):
        path.unlink(missing_ok=True)
