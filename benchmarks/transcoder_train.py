"""Transcoder training for every layer, beside one bare forward pass of the model over the same tokens.

    python benchmarks/transcoder_train.py [--tokens 16384] [--epochs 1] [--model gemma-3-270m] [--layers all]

Each side runs in its own process, one after the other, on the same train-part windows: the bare pass runs the
whole model once over them (what any pass over the tokens costs at least); the training pass is
`interp transcoder train`'s own code at its defaults (8x width, k = 32, affine skip): one forward fills the
activation store, then each layer trains `--epochs` over it, in a temporary folder. It prints tokens/s of both
(training counts each token once per epoch), their ratio, each process's peak resident memory, the store's disk
cost, and the per-layer training FVU, so the default budget of `interp transcoder train` reads off as minutes.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

BARE = """
import json, resource, sys, time
import torch
from tools.configs import TranscoderTrainConfig
from tools.model.subject import load_subject_model
from tools.passes.cache import prepare_windows
from tools.data.windows import content_mask
config = TranscoderTrainConfig(model=sys.argv[1], tokens=int(sys.argv[2]))
subject = load_subject_model(config.model, config.device, config.dtype)
windows = prepare_windows(config, subject, part="train")
tokens, started = 0, time.perf_counter()
with torch.inference_mode():
    for start in range(0, len(windows), config.model_batch_size):
        input_ids = windows[start:start + config.model_batch_size].to(subject.device)
        subject.model(input_ids=input_ids, use_cache=False)
        tokens += int(content_mask(input_ids, subject.tokenizer).sum())
        if tokens >= config.tokens:
            break
seconds = time.perf_counter() - started
print(json.dumps({"tokens": tokens, "seconds": seconds,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

TRAIN = """
import json, resource, sys
from tools.configs import TranscoderTrainConfig
from tools.passes.transcoder_train import run_transcoder_train
config = TranscoderTrainConfig(model=sys.argv[1], tokens=int(sys.argv[2]), layers=sys.argv[3], out=sys.argv[4],
                               epochs=int(sys.argv[5]), checkpoint_seconds=1e9)
result = run_transcoder_train(config, progress=False)
print(json.dumps({"tokens": result.tokens, "seconds": result.seconds, "store_bytes": result.store_bytes,
                  "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "fvu": {stats.layer: stats.fvu for stats in result.layers},
                  "dead": {stats.layer: stats.dead_fraction for stats in result.layers}}))
"""


def run(program: str, *args: str) -> dict:
    root = Path(__file__).resolve().parents[1]
    done = subprocess.run([sys.executable, "-c", program, *args], capture_output=True, text=True, cwd=root,
                          check=False)
    if done.returncode != 0:
        sys.exit(done.stderr[-3000:])
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=16384)
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--layers", default="all")
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    bare = run(BARE, args.model, str(args.tokens))
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        trained = run(TRAIN, args.model, str(args.tokens), args.layers, str(Path(folder) / "set"), str(args.epochs))
        wall = time.perf_counter() - started
    bare_rate = bare["tokens"] / bare["seconds"]
    train_rate = trained["tokens"] * args.epochs / trained["seconds"]
    layers = len(trained["fvu"])
    print(f"{args.model}, {layers} layers, {trained['tokens']:,} training tokens x {args.epochs} epochs (train part "
          "of the corpus)")
    print(f"bare forward, whole model:            {bare_rate:8.0f} tokens/s   peak {bare['peak_mib']:7.0f} MiB")
    print(f"transcoder training, every layer:     {train_rate:8.0f} tokens/s   peak {trained['peak_mib']:7.0f} MiB   "
          f"({wall:.0f} s with model load; token-epochs per second)")
    print(f"training / bare forward: {train_rate / bare_rate:.3f}  (one forward fills the store for {layers} layers)")
    per_token = trained["store_bytes"] / max(trained["tokens"], 1)
    print(f"activation store: {per_token:,.0f} bytes per token for {layers} layers, {per_token / layers:,.0f} per "
          f"token and layer; the default 400,000 tokens take {400_000 * per_token / 2**30:.1f} GiB")
    print(f"at this rate the default 400,000 tokens x 2 epochs take {800_000 / train_rate / 60:.0f} min")
    fvu = ", ".join(f"{layer}: {value:.2f}" for layer, value in trained["fvu"].items())
    print(f"training FVU by layer after {trained['tokens']:,} tokens: {fvu}")
    print(f"peak of this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MiB")


if __name__ == "__main__":
    main()
