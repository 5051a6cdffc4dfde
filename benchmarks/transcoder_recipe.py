"""The experiments behind the transcoder recipe: one per suspect for the silent latents, and the learning-rate
sweep, on one layer of Gemma 3 270M (layer 6 unless `--layer`; docs/guides/transcoders.md quotes them).

    python benchmarks/transcoder_recipe.py fill                       # cache layer 6 once: 400k train + 20k held-out
    python benchmarks/transcoder_recipe.py --layer 9 fill             # ... or another layer (each its own store)
    python benchmarks/transcoder_recipe.py suspect --init old --auxk old --center off      # today's trainer
    python benchmarks/transcoder_recipe.py suspect --init ridge --auxk new --center on     # ... one change at a time
    python benchmarks/transcoder_recipe.py sweep --tokens 400000 --epochs 2 --lr 5e-3      # the shipped trainer
    python benchmarks/transcoder_recipe.py --layer 9 sweep --auxk-alpha 0.03125            # ... with Gao's AuxK weight
    python benchmarks/transcoder_recipe.py stats                      # the input's mean, the output's massive dims

`suspect` is a self-contained TopK transcoder trainer with a switch per suspect (AuxK's sign, the start, input
centring, the ReLU on top-k slots, the decoder-norm step, the learning rate and its schedule, per-dimension
output weighting), written the way `interp transcoder train` trained before this recipe, so each switch
isolates one change. `sweep` runs the shipped trainer (`tools.passes.transcoder_train.train_layer`) on the
same store. Both print held-out FVU beside the layer's own ridge fit, that FVU split into Gemma's two massive
output dimensions and the other 638, mean L0, and the latents that never fire over 100k tokens.
"""

import argparse
import dataclasses
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tools.configs import TranscoderTrainConfig  # noqa: E402
from tools.passes.activation_store import ActivationStore, StoreState  # noqa: E402
from tools.sae.linear import ridge_fit  # noqa: E402

WIDTH, K, BATCH = 5120, 32, 1024
STORES = Path(tempfile.gettempdir()) / "interp-transcoder-recipe"
LAYER = 6
"""The layer every subcommand works on; `--layer` sets it before the subcommand runs."""


def open_store(name: str, tokens: int | None = None) -> ActivationStore:
    folder = STORES / f"layer_{LAYER}" / name
    state = StoreState(**json.loads((folder / "store.json").read_text()))
    if tokens is not None:
        if tokens > state.tokens:
            sys.exit(f"the {name} store holds {state.tokens:,} tokens, fewer than {tokens:,}; rerun fill")
        state.tokens = tokens
    return ActivationStore(folder, state)


def fill(args: argparse.Namespace) -> None:
    from tools.data.windows import content_mask
    from tools.model.hooks import HookPoint, run_to_hooks
    from tools.model.subject import load_subject_model
    from tools.passes.cache import prepare_windows

    config = TranscoderTrainConfig(model=args.model)
    subject = load_subject_model(config.model, "cpu", "float32")
    hooks = [HookPoint("mlp_in", LAYER), HookPoint("mlp_out", LAYER)]
    for part, tokens in (("held_out", 20_000), ("train", 400_000)):
        windows = prepare_windows(dataclasses.replace(config, tokens=int(tokens * 1.1) + 8192), subject, part=part)
        folder = STORES / f"layer_{LAYER}" / part
        store = ActivationStore.open(folder, [LAYER], 640, {"part": part, "model": config.model})
        start = store.state.windows_done
        with torch.inference_mode():
            while start < len(windows) and store.tokens < tokens:
                ids = windows[start:start + 16]
                acts, mask = run_to_hooks(subject.model, ids, hooks), content_mask(ids, subject.tokenizer)
                start += len(ids)
                store.append({LAYER: (acts[f"mlp_in.{LAYER}"][mask], acts[f"mlp_out.{LAYER}"][mask])}, start)
        print(f"{part}: {store.tokens:,} tokens in {folder}")


def fvu(prediction: torch.Tensor, target: torch.Tensor) -> float:
    return float((prediction - target).pow(2).sum() / (target - target.mean(0)).pow(2).sum())


def report(tag: str, predict, encode, settings: dict, seconds: float) -> None:
    """Held-out FVU (all, the 2 massive dims, the rest) beside the ridge fit, L0, never-fired over 100k tokens."""
    held, train = open_store("held_out"), open_store("train")
    x_held, y_held = held.rows("in", LAYER).float(), held.rows("out", LAYER).float()
    x_fit, y_fit = train.rows("in", LAYER)[:60_000].float(), train.rows("out", LAYER)[:60_000].float()
    weight, bias = ridge_fit(x_fit, y_fit)
    massive = y_fit.var(0).topk(2).indices
    rest = torch.ones(y_fit.shape[1], dtype=torch.bool)
    rest[massive] = False
    with torch.no_grad():
        prediction, linear = predict(x_held), x_held @ weight + bias
        codes = encode(x_held)
        fired = torch.zeros(codes.shape[1], dtype=torch.bool)
        x_train = train.rows("in", LAYER)
        for start in range(len(x_train) - 100_000, len(x_train), 8192):
            fired |= (encode(x_train[start:start + 8192].float()) > 0).any(0)
    row = {"tag": tag, **settings, "fvu": fvu(prediction, y_held), "linear_fvu": fvu(linear, y_held),
           "fvu_massive": fvu(prediction[:, massive], y_held[:, massive]),
           "linear_fvu_massive": fvu(linear[:, massive], y_held[:, massive]),
           "fvu_rest": fvu(prediction[:, rest], y_held[:, rest]),
           "linear_fvu_rest": fvu(linear[:, rest], y_held[:, rest]),
           "mean_l0": float((codes > 0).sum(1).float().mean()), "dead_100k": 1 - float(fired.float().mean()),
           "seconds": seconds}
    print(json.dumps({key: round(value, 4) if isinstance(value, float) else value for key, value in row.items()}))


def stats(args: argparse.Namespace) -> None:
    """What the experiments' reading rests on, over the first 100k training tokens."""
    store = open_store("train")
    x, y = store.rows("in", LAYER)[:100_000].float(), store.rows("out", LAYER)[:100_000].float()
    variance = y.var(0)
    massive = variance.topk(2).indices
    print(json.dumps({
        "input_mean_norm": round(float(x.mean(0).norm()), 2), "input_token_norm": round(float(x.norm(dim=1).mean()), 2),
        "output_massive_dims": massive.tolist(),
        "output_variance_share_of_2": round(float(variance[massive].sum() / variance.sum()), 3),
        "output_massive_range": [round(float(y[:, massive].min())), round(float(y[:, massive].max()))],
        "output_median_dim_std": round(float(variance.sqrt().median()), 2)}))


def suspect(args: argparse.Namespace) -> None:
    """The old trainer with one switch per suspect."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    store = open_store("train", args.tokens)
    x_all, y_all = store.rows("in", LAYER).float(), store.rows("out", LAYER).float()
    first = slice(0, 8192)
    d = x_all.shape[1]
    mean_in = x_all[first].mean(0) if args.center == "on" else torch.zeros(d)
    scale_in = math.sqrt(d) / float((x_all[first] - mean_in).norm(dim=1).mean())
    scale_out = math.sqrt(d) / float(y_all[first].norm(dim=1).mean())
    # --whiten: each output dimension weighted by 1 / its std (the massive dimensions stop dominating the loss).
    weight_out = y_all[first].std(0) / y_all[first].std(0).pow(2).mean().sqrt() if args.whiten == "on" else \
        torch.ones(d)
    x_all, y_all = (x_all - mean_in) * scale_in, y_all * scale_out / weight_out
    if args.init == "old":  # random unit decoder rows, the encoder tied to them, b_enc 0, b_dec the mean, no skip
        W_dec = torch.randn(WIDTH, d, generator=generator)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        W_enc, W_skip, b_dec = W_dec.T.clone(), torch.zeros(d, d), y_all[first].mean(0)
        b_enc = torch.zeros(WIDTH)
    else:  # the ridge fit as the start, a small untied encoder, b_enc centring the pre-activations
        W_skip, b_dec = ridge_fit(x_all[first], y_all[first])
        W_enc = torch.randn(d, WIDTH, generator=generator) * (args.encoder_scale / math.sqrt(d))
        W_dec = torch.randn(WIDTH, d, generator=generator)
        W_dec /= W_dec.norm(dim=1, keepdim=True)
        b_enc = -(x_all[first].mean(0) @ W_enc)
    parameters = [W_enc, b_enc, W_dec, b_dec, W_skip]
    for parameter in parameters:
        parameter.requires_grad_(True)
    optimizer = torch.optim.Adam(parameters, lr=args.lr)
    steps = args.epochs * (len(x_all) // BATCH)
    warmup = max(1, steps // 20)
    since_fired = torch.zeros(WIDTH, dtype=torch.long)

    def encode(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        pre = x @ W_enc + b_enc
        top = pre.topk(K, dim=-1)
        return pre, top.indices, torch.relu(top.values) if args.relu == "on" else top.values

    started, step = time.monotonic(), 0
    for _ in range(args.epochs):
        order = torch.randperm(len(x_all), generator=generator)
        for start in range(0, len(x_all) - BATCH + 1, BATCH):
            batch = order[start:start + BATCH]
            x, y = x_all[batch], y_all[batch]
            pre, indices, values = encode(x)
            prediction = torch.zeros(len(x), WIDTH).scatter(-1, indices, values) @ W_dec + b_dec + x @ W_skip
            error = y - prediction
            loss = error.pow(2).sum() / (y - y.mean(0)).pow(2).sum()
            dead = since_fired >= 50_000
            if args.auxk != "none" and dead.any():
                aux = pre.masked_fill(~dead, float("-inf")).topk(min(int(dead.sum()), d // 2), dim=-1)
                aux_values = torch.relu(aux.values) if args.relu == "on" else aux.values
                missed = error.detach() if args.auxk == "new" else -error.detach()
                reconstruction = torch.zeros(len(x), WIDTH).scatter(-1, aux.indices, aux_values) @ W_dec
                loss = loss + (reconstruction - missed).pow(2).sum() / missed.pow(2).sum() / 32
            optimizer.zero_grad()
            loss.backward()
            if args.decoder_norm == "unit":
                with torch.no_grad():
                    W_dec.grad -= (W_dec.grad * W_dec).sum(1, keepdim=True) * W_dec
            if args.schedule == "warmup-decay":
                torch.nn.utils.clip_grad_norm_(parameters, 1.0)
                rate = args.lr * ((step + 1) / warmup if step < warmup else (steps - step) / (steps - warmup))
                for group in optimizer.param_groups:
                    group["lr"] = rate
            optimizer.step()
            step += 1
            with torch.no_grad():
                if args.decoder_norm == "unit":
                    W_dec /= W_dec.norm(dim=1, keepdim=True)
                fired = torch.zeros(WIDTH, dtype=torch.bool)
                fired[indices[values > 0]] = True
                since_fired = torch.where(fired, 0, since_fired + len(x))
    seconds = time.monotonic() - started

    def predict(x: torch.Tensor) -> torch.Tensor:
        x = (x - mean_in) * scale_in
        _, indices, values = encode(x)
        out = torch.zeros(len(x), WIDTH).scatter(-1, indices, values) @ W_dec + b_dec + x @ W_skip
        return out * weight_out / scale_out

    def codes(x: torch.Tensor) -> torch.Tensor:
        _, indices, values = encode((x - mean_in) * scale_in)
        return torch.zeros(len(x), WIDTH).scatter(-1, indices, values)

    settings = {key: value for key, value in vars(args).items() if key not in ("command", "handler", "tag")}
    report(args.tag, predict, codes, settings, seconds)


def auxk_variant(name: str):
    """The shipped trainer's step with AuxK changed one way, for `sweep --auxk-variant`: `clip-apart` clips the
    main loss's gradient alone and adds AuxK's after (AuxK only moves dead latents' rows, so the main step is
    never shrunk to make room for it); `target-scaled` normalizes AuxK by the target's variance, as the main loss
    is, instead of by the residual's (so it is never larger than the error it fits)."""
    from tools.passes.sae_train import StepLosses, TopKTrainer

    class Variant(TopKTrainer):
        def losses(self, x: torch.Tensor, target: torch.Tensor) -> StepLosses:
            losses = super().losses(x, target)
            if losses.aux is not None and name == "target-scaled":
                share = losses.error.pow(2).sum() / (target - target.mean(0)).pow(2).sum()
                losses.aux = losses.aux * share.clamp(max=1.0)
            if losses.aux is not None and name == "dead-scaled":  # sparsify: min(dead / k_aux, 1)
                losses.aux = losses.aux * min(float(losses.dead.sum()) / (self.coder.d_out // 2), 1.0)
            return losses

        def backward(self, main: torch.Tensor, aux: torch.Tensor | None) -> None:
            if name != "clip-apart":
                return super().backward(main, aux)
            main.backward(retain_graph=True)
            torch.nn.utils.clip_grad_norm_(self.parameters, self.schedule.clip)
            if aux is not None and aux.requires_grad:
                (self.auxk_alpha * aux).backward()
            self.project_decoder_grad()

    return Variant


def sweep(args: argparse.Namespace) -> None:
    """The shipped trainer, one layer, on the same store."""
    from tools.passes import transcoder_train

    if args.auxk_variant != "shipped":
        transcoder_train.TopKTrainer = auxk_variant(args.auxk_variant)  # type: ignore[misc]

    store = open_store("train", args.tokens)
    config = TranscoderTrainConfig(tokens=args.tokens, epochs=args.epochs, lr=args.lr, dead_tokens=args.dead_tokens,
                                   auxk_alpha=args.auxk_alpha, expansion=args.expansion, checkpoint_seconds=1e9)
    with tempfile.TemporaryDirectory() as folder:
        started = time.monotonic()
        transcoder_train.train_layer(config, store, LAYER, 640 * args.expansion, torch.device("cpu"), Path(folder),
                                     progress=False)
        seconds = time.monotonic() - started
        coder = transcoder_train.load_finished(Path(folder), LAYER, torch.device("cpu"))
    settings = {"layer": LAYER, "tokens": args.tokens, "epochs": args.epochs, "lr": args.lr,
                "dead_tokens": args.dead_tokens, "auxk_alpha": args.auxk_alpha, "expansion": args.expansion,
                "auxk_variant": args.auxk_variant}
    report(args.tag, coder.forward, coder.encode, settings, seconds)


def main() -> None:
    torch.set_num_threads(max(1, torch.get_num_threads()))
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--layer", type=int, default=6, help="the layer of Gemma 3 270M to experiment on")
    commands = parser.add_subparsers(dest="command", required=True)
    filling = commands.add_parser("fill")
    filling.add_argument("--model", default="gemma-3-270m")
    filling.set_defaults(handler=fill)
    commands.add_parser("stats").set_defaults(handler=stats)
    one = commands.add_parser("suspect")
    one.add_argument("--tag", default="")
    one.add_argument("--tokens", type=int, default=200_000)
    one.add_argument("--epochs", type=int, default=1)
    one.add_argument("--init", choices=("old", "ridge"), default="old")
    one.add_argument("--auxk", choices=("old", "new", "none"), default="old")
    one.add_argument("--center", choices=("on", "off"), default="off")
    one.add_argument("--relu", choices=("on", "off"), default="on")
    one.add_argument("--decoder-norm", choices=("unit", "free"), default="unit")
    one.add_argument("--whiten", choices=("on", "off"), default="off")
    one.add_argument("--schedule", choices=("constant", "warmup-decay"), default="constant")
    one.add_argument("--lr", type=float, default=3.58e-3, help="the old default: 10 x 2e-4 / sqrt(5120 / 16384)")
    one.add_argument("--encoder-scale", type=float, default=1.0)
    one.set_defaults(handler=suspect)
    shipped = commands.add_parser("sweep")
    shipped.add_argument("--tag", default="")
    shipped.add_argument("--tokens", type=int, default=400_000)
    shipped.add_argument("--epochs", type=int, default=2)
    shipped.add_argument("--lr", type=float, default=5e-3)
    shipped.add_argument("--dead-tokens", type=int, default=50_000)
    shipped.add_argument("--auxk-alpha", type=float, default=TranscoderTrainConfig().auxk_alpha)
    shipped.add_argument("--expansion", type=int, default=8)
    shipped.add_argument("--auxk-variant", default="shipped",
                         choices=("shipped", "clip-apart", "target-scaled", "dead-scaled"))
    shipped.set_defaults(handler=sweep)
    args = parser.parse_args()
    global LAYER
    LAYER = args.layer
    args.handler(args)


if __name__ == "__main__":
    main()
