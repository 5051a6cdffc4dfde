"""`interp cache --ray auto --workers 2` (1 torch thread each) against one process with 1 torch thread, same
tokens, side by side in one run, on the embedded defaults (Gemma 3 270M, mlp.6, the fortunes corpus).

    python benchmarks/ray_scaling.py [--tokens 131072] [--workers 2]

Prints each pass's wall time (from the call to the catalog written, model loads included: the workers load
the model too), the speedup, and the merge of the shards' states as a share of the Ray pass. Run it alone:
two torch processes on two cores are exactly what it measures.
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.configs import CacheConfig  # noqa: E402
from tools.passes import cache_state  # noqa: E402
from tools.passes.cache import run_cache  # noqa: E402
from tools.ray_workers import RaySettings, start_ray  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=131072)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--hook", default="mlp.6")
    args = parser.parse_args()
    config = CacheConfig(hook=args.hook, tokens=args.tokens, device="cpu")
    settings = RaySettings("auto", args.workers, 1)
    start_ray(settings)  # the cluster's start-up is not the pass's
    merge_seconds = 0.0
    merge = cache_state.CacheState.merge_state_dict

    def timed_merge(self, *a, **k):
        nonlocal merge_seconds
        started = time.perf_counter()
        merge(self, *a, **k)
        merge_seconds += time.perf_counter() - started

    cache_state.CacheState.merge_state_dict = timed_merge  # type: ignore[method-assign]
    with tempfile.TemporaryDirectory() as folder:
        torch.set_num_threads(1)
        started = time.perf_counter()
        run_cache(config, Path(folder) / "one.duckdb", progress=False)
        single = time.perf_counter() - started
        started = time.perf_counter()
        run_cache(config, Path(folder) / "ray.duckdb", progress=False, ray=settings)
        distributed = time.perf_counter() - started
    print(f"{args.tokens:,} tokens of {args.hook}: one process (1 thread) {single:.1f} s; {args.workers} Ray workers "
          f"(1 thread each) {distributed:.1f} s: {single / distributed:.2f}x; merging the shards' states "
          f"{merge_seconds:.2f} s ({merge_seconds / distributed:.1%} of the Ray pass)")


if __name__ == "__main__":
    main()
