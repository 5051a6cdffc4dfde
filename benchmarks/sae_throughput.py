"""SAE cost against the subject model's forward pass on the same tokens, and SAE training speed.

    python benchmarks/sae_throughput.py [--sae FOLDER] [--hook resid_post.6] [--tokens 8192]

Prints (1) SAE encode+decode time as a fraction of the forward pass that produced its input (both to
the hook and over the whole body), measured side by side and interleaved, median of --repeats, and
(2) SAE training tokens/s on activations already in memory (the optimizer alone, no model forward).
Without --sae, an untrained 8x TopK SAE (k=32) of the right width is timed: the cost depends on the
shapes, not on the weights.
"""

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.configs import CacheConfig  # noqa: E402
from tools.model.hooks import hook_width, n_layers, parse_hook, run_to_hooks  # noqa: E402
from tools.model.subject import load_subject_model  # noqa: E402
from tools.passes.cache import prepare_windows  # noqa: E402
from tools.passes.sae_train import init_sae, train_topk_sae  # noqa: E402
from tools.sae.formats import load_sae  # noqa: E402


def timed(function) -> float:
    start = time.perf_counter()
    function()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--hook", default="resid_post.6")
    parser.add_argument("--sae", default="")
    parser.add_argument("--tokens", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--train-tokens", type=int, default=32_768)
    args = parser.parse_args()

    subject = load_subject_model(args.model)
    hook = parse_hook(args.hook, n_layers(subject.model))
    d_in = hook_width(subject.model, hook)
    windows = prepare_windows(CacheConfig(model=args.model, tokens=args.tokens), subject)
    batches = [windows[i:i + args.batch_size].to(subject.device) for i in range(0, len(windows), args.batch_size)]
    acts = [run_to_hooks(subject.model, ids, [hook])[hook.name] for ids in batches]
    if args.sae:
        sae = load_sae(args.sae).to(subject.device)
    else:
        sae = init_sae(torch.cat(acts).flatten(0, 1)[:4096].float(), 8 * d_in, 32,
                       torch.Generator(device=subject.device).manual_seed(0))
        for name in ("W_enc", "b_enc", "W_dec", "b_dec"):
            setattr(sae, name, getattr(sae, name).detach())
    print(f"{args.model} {hook.name}, SAE {sae.d_in}->{sae.d_sae} {sae.activation}"
          f"{f' k={sae.k}' if sae.k else ''}, {windows.numel()} tokens, batch {args.batch_size}, {subject.device}, "
          f"{torch.get_num_threads()} threads")

    def forward_to_hook():
        for ids in batches:
            run_to_hooks(subject.model, ids, [hook])

    def forward_body():
        with torch.inference_mode():
            for ids in batches:
                subject.model.model(input_ids=ids, use_cache=False)

    def sae_pass():
        with torch.inference_mode():
            for a in acts:
                sae.decode(sae.encode(a.float()))

    forward_to_hook()  # warm-up
    times: dict[str, list[float]] = {"to_hook": [], "body": [], "sae": []}
    for _ in range(args.repeats):
        times["to_hook"].append(timed(forward_to_hook))
        times["body"].append(timed(forward_body))
        times["sae"].append(timed(sae_pass))
    median = {name: statistics.median(values) for name, values in times.items()}
    print(f"forward to the hook: {median['to_hook']:.2f} s   whole body: {median['body']:.2f} s   "
          f"SAE encode+decode: {median['sae']:.2f} s")
    print(f"SAE / forward to the hook: {median['sae'] / median['to_hook']:.3f}")
    print(f"SAE / forward of the whole body: {median['sae'] / median['body']:.3f}")

    buffer = torch.cat([a[:, 1:].flatten(0, 1) for a in acts]).float()  # real tokens after BOS
    repeats = max(1, args.train_tokens // len(buffer))
    start = time.perf_counter()
    _, stats = train_topk_sae(iter([buffer] * (repeats + 1)), 8 * d_in, 32, args.train_tokens, progress=False)
    print(f"SAE training ({8 * d_in} latents, k=32, batch 1024): "
          f"{stats.tokens / (time.perf_counter() - start):,.0f} tokens/s")


if __name__ == "__main__":
    main()
