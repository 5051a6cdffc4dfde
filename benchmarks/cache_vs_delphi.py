"""Caching SAE latents: our `interp sae load` path beside EleutherAI delphi's `LatentCache`, on the same model,
windows, SAE and batch size, in one run.

    pip install -e '.[bench]' && pip install --no-deps eai-delphi==0.1.3
    python benchmarks/cache_vs_delphi.py --sae sae-l6 [--tokens 16384] [--batch-size 16]

Contenders, each in a fresh process so peaks do not mix (model load included in the peak, the same for all):
- ours: `run_cache` (what `interp sae load` runs): stream, build the rows, write the catalog;
- delphi as it ships: `LatentCache.run` runs the whole model (all 18 layers and the 262k-token unembedding)
  with a forward hook at the SAE's layer, keeps every non-zero (location, value), then `save_splits`;
- delphi cut: the same, with the model's layers cut after the hooked one and the unembedding made an
  identity, as our pass stops at the hook.
Delphi's encode is our SAE's own `encode` (dense codes, as delphi's sparse coders return), so both see the
same latents. Reported: caching tokens/s (the pass itself), whole-command tokens/s (with writing), peak
resident memory, bytes on disk, and our ratio to each.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.configs import CacheConfig  # noqa: E402
from tools.features import resolve_features  # noqa: E402
from tools.model.hooks import hf_module_path  # noqa: E402
from tools.model.subject import load_subject_model  # noqa: E402
from tools.passes import cache as cache_pass  # noqa: E402


def folder_bytes(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def peak_rss() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def ours(config: CacheConfig, out: Path) -> dict:
    timed: dict[str, float] = {}
    original = cache_pass.stream

    def timed_stream(*args, **kwargs):
        start = time.perf_counter()
        original(*args, **kwargs)
        timed["stream"] = time.perf_counter() - start

    cache_pass.stream = timed_stream  # type: ignore[assignment]
    start = time.perf_counter()
    result = cache_pass.run_cache(config, out / "catalog.duckdb", progress=False)
    whole = time.perf_counter() - start
    return {"tokens": result.tokens, "caching_s": timed["stream"], "whole_s": whole,
            "disk_bytes": folder_bytes(out / "catalog.duckdb")}


def delphi(config: CacheConfig, out: Path, cut: bool) -> dict:
    from delphi.config import CacheConfig as DelphiConfig  # noqa: F401  (imported as delphi's own run does)
    from delphi.latents import LatentCache

    start_whole = time.perf_counter()
    subject = load_subject_model(config.model)
    source = resolve_features("", config.sae, subject)
    windows = cache_pass.prepare_windows(config, subject)
    hookpoint = hf_module_path(subject.model, source.hook)
    if cut:
        layers = subject.model.model.layers
        subject.model.model.layers = layers[:source.hook.layer + 1]
        subject.model.lm_head = torch.nn.Identity()
    sae = source.sae
    assert sae is not None
    cache = LatentCache(subject.model, {hookpoint: lambda acts: sae.encode(acts.float())},
                        batch_size=config.batch_size)
    start = time.perf_counter()
    cache.run(int(windows.numel()), windows)
    caching = time.perf_counter() - start
    cache.save_splits(n_splits=5, save_dir=out / "delphi")
    return {"tokens": int(windows.numel()), "caching_s": caching, "whole_s": time.perf_counter() - start_whole,
            "disk_bytes": folder_bytes(out / "delphi")}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sae", required=True, help="an SAE folder at a layer of the model (interp sae train)")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--contenders", default="ours,delphi-cut,delphi")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args()
    config = CacheConfig(model=args.model, sae=str(Path(args.sae).resolve()), tokens=args.tokens,
                         batch_size=args.batch_size, checkpoint_seconds=1e9)
    if args.one:
        with tempfile.TemporaryDirectory() as folder:
            torch.manual_seed(0)
            result = ours(config, Path(folder)) if args.one == "ours" else \
                delphi(config, Path(folder), cut=args.one == "delphi-cut")
        print(json.dumps(result | {"peak_bytes": peak_rss()}))
        return
    results = {}
    for name in args.contenders.split(","):
        command = [sys.executable, __file__, "--one", name, "--sae", args.sae, "--model", args.model, "--tokens",
                   str(args.tokens), "--batch-size", str(args.batch_size)]
        done = subprocess.run(command, check=True, capture_output=True, text=True)
        results[name] = json.loads(done.stdout.splitlines()[-1])
    print(f"{args.model}, SAE {args.sae}, {results[next(iter(results))]['tokens']:,} tokens, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    print(f"{'':12} {'caching tok/s':>14} {'whole tok/s':>12} {'peak RSS':>10} {'on disk':>10}")
    for name, r in results.items():
        print(f"{name:12} {r['tokens'] / r['caching_s']:14.0f} {r['tokens'] / r['whole_s']:12.0f} "
              f"{r['peak_bytes'] / 2**30:9.2f}G {r['disk_bytes'] / 2**20:9.1f}M")
    if "ours" in results:
        for name, r in results.items():
            if name != "ours":
                print(f"ours / {name}: caching {r['caching_s'] / results['ours']['caching_s']:.2f}x, whole "
                      f"{r['whole_s'] / results['ours']['whole_s']:.2f}x, peak memory "
                      f"{results['ours']['peak_bytes'] / r['peak_bytes']:.2f}x")


if __name__ == "__main__":
    main()
