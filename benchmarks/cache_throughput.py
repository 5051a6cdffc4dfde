"""Caching throughput against a bare forward pass, side by side in one run, and peak memory at two
token budgets.

    python benchmarks/cache_throughput.py [--model gemma-3-270m] [--hook mlp.6] [--tokens 32768]

Same model, windows and batch size for every timing; the two timings the target compares are
interleaved over --repeats runs and the median kept, because these machines are noisy. Two baselines:
- bare forward to the hook: the model run exactly as far as the cache pass runs it, keeping nothing;
  the ratio against it is the cost of the bookkeeping (top-k, quantile reservoir, negatives, stats).
- bare forward of the whole body (all layers, no unembedding): what caching would cost if it ran
  the full model, as hooking without stopping early does.
Peak memory runs each budget in a fresh process so one cannot inherit the other's peak.
"""

import argparse
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.data.windows import content_mask  # noqa: E402
from tools.model.hooks import hook_width, n_layers, parse_hook, run_to_hooks  # noqa: E402
from tools.model.subject import load_subject_model  # noqa: E402
from tools.passes.cache import CacheConfig, build_rows, prepare_windows  # noqa: E402
from tools.passes.cache_state import CacheState, batch_generator, update_state  # noqa: E402


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def batches(windows: torch.Tensor, batch_size: int):
    for start in range(0, len(windows), batch_size):
        yield start // batch_size, torch.arange(start, min(start + batch_size, len(windows)))


def time_bare_body(subject, windows, batch_size) -> float:
    start = time.perf_counter()
    with torch.inference_mode():
        for _, ids in batches(windows, batch_size):
            subject.model.model(input_ids=windows[ids].to(subject.device), use_cache=False)
    synchronize(subject.device)
    return time.perf_counter() - start


def time_bare_to_hook(subject, hook, windows, batch_size) -> float:
    start = time.perf_counter()
    for _, ids in batches(windows, batch_size):
        run_to_hooks(subject.model, windows[ids].to(subject.device), [hook])
    synchronize(subject.device)
    return time.perf_counter() - start


def run_cache_pass(subject, hook, config, windows) -> tuple[float, CacheState]:
    """The whole pass minus model loading and the catalog write: stream, then build the rows."""
    start = time.perf_counter()
    state = CacheState(config, hook_width(subject.model, hook), len(windows), subject.device)
    for batch_index, ids in batches(windows, config.batch_size):
        input_ids = windows[ids].to(subject.device)
        acts = run_to_hooks(subject.model, input_ids, [hook])[hook.name]
        update_state(state, acts, content_mask(input_ids, subject.tokenizer), ids.to(subject.device),
                     batch_generator(config.seed, batch_index, subject.device), config.threshold)
    consume(build_rows(state, config, windows, subject, {"feature_set_id": "bench"}, "bench"))
    synchronize(subject.device)
    return time.perf_counter() - start, state


def state_bytes(state: CacheState) -> int:
    tensors = [*state.top.state_dict().values(), *state.reservoir.state_dict().values(),
               *state.random.state_dict().values(), *state.stats.state_dict().values()]
    return sum(t.numel() * t.element_size() for t in tensors)


def consume(rows) -> int:
    """Builds every chunk of examples and the windows table, as the catalog write would, keeping none."""
    n_examples = sum(chunk.num_rows for chunk in rows.examples)
    rows.windows()
    return n_examples


def rss_bytes(field: str) -> int:
    """VmRSS (now) or VmHWM (peak since the last reset) of this process, from /proc (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def memory_run(args) -> None:
    """One budget in this process; prints JSON for the parent. The peak is measured from after the
    model is loaded (the load's own peak would hide everything else)."""
    config = CacheConfig(model=args.model, hook=args.hook, tokens=args.memory_run, batch_size=args.batch_size)
    subject = load_subject_model(config.model)
    hook = parse_hook(config.hook, n_layers(subject.model))
    windows = prepare_windows(config, subject)
    # The weights are memory-mapped: touch every page first (one forward, and a read of every tensor,
    # the 262k-row embedding included), so what grows afterwards is the pass's memory, not the model's.
    run_to_hooks(subject.model, windows[: config.batch_size].to(subject.device), [hook])
    for tensor in subject.model.state_dict().values():
        tensor.sum()
    if subject.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS
        before = rss_bytes("VmRSS")
    _, state = run_cache_pass(subject, hook, config, windows)
    peak = torch.cuda.max_memory_allocated() if subject.device.type == "cuda" else rss_bytes("VmHWM")
    print(json.dumps({"tokens": int(windows.numel()), "peak_bytes": peak, "before_bytes": before,
                      "state_bytes": state_bytes(state)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--hook", default="mlp.6")
    parser.add_argument("--tokens", type=int, default=32_768)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-budgets", type=int, nargs=2, default=[20_000, 100_000])
    parser.add_argument("--memory-run", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_run:
        return memory_run(args)

    config = CacheConfig(model=args.model, hook=args.hook, tokens=args.tokens, batch_size=args.batch_size)
    subject = load_subject_model(config.model)
    hook = parse_hook(config.hook, n_layers(subject.model))
    windows = prepare_windows(config, subject)
    n_tokens = windows.numel()
    print(f"{config.model} {hook.name} ({hook_width(subject.model, hook)} features), {n_tokens} tokens, "
          f"batch {config.batch_size}, {subject.device} {subject.dtype}, {torch.get_num_threads()} threads")
    time_bare_to_hook(subject, hook, windows[: config.batch_size], config.batch_size)  # warm-up
    times: dict[str, list[float]] = {"body": [], "to_hook": [], "cache": []}
    for repeat in range(args.repeats):
        if repeat == 0:  # the slowest and least interesting baseline: once is enough
            times["body"].append(time_bare_body(subject, windows, config.batch_size))
        times["to_hook"].append(time_bare_to_hook(subject, hook, windows, config.batch_size))
        times["cache"].append(run_cache_pass(subject, hook, config, windows)[0])
    rate = {name: n_tokens / statistics.median(values) for name, values in times.items()}
    print(f"bare forward, whole body:   {rate['body']:8.0f} tokens/s")
    print(f"bare forward, to the hook:  {rate['to_hook']:8.0f} tokens/s")
    print(f"caching pass (all features): {rate['cache']:7.0f} tokens/s")
    print(f"ratio caching / bare forward to the hook: {rate['cache'] / rate['to_hook']:.3f}  (target >= 0.85)")
    print(f"ratio caching / bare forward whole body:  {rate['cache'] / rate['body']:.3f}")

    for budget in args.memory_budgets:
        out = subprocess.run([sys.executable, __file__, "--model", args.model, "--hook", args.hook,
                              "--batch-size", str(args.batch_size), "--memory-run", str(budget)],
                             capture_output=True, text=True, check=True)
        result = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"peak memory at {result['tokens']:>7} tokens: {result['peak_bytes'] / 2**20:8.1f} MiB, "
              f"{(result['peak_bytes'] - result['before_bytes']) / 2**20:6.1f} MiB above the loaded model "
              f"(streaming state {result['state_bytes'] / 2**20:.1f} MiB)")


if __name__ == "__main__":
    main()
