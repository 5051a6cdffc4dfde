"""Training TopK transcoders for many layers: one pass of the subject model fills an activation store, then
each layer trains on it for `--epochs`.

The forward is the dear part on a CPU, so it runs once: every chosen layer's MLP input (`mlp_in.L`) and output
(`mlp_out.L`) on real tokens go to an `ActivationStore` on disk (bf16) inside the output folder. Each layer then
trains alone (memory: one transcoder, its Adam moments and its layer's rows), shuffled across the whole store
every epoch, and the store is deleted when the set is written.

The recipe, each choice with where it comes from:
- The start is the linear floor: W_skip and b_dec are the ridge fit of the MLP output on its input over the
  first `init_tokens` (tools/sae/linear.py), so step 0 predicts what a linear map can, and the latents learn
  only the rest (skip transcoders: Paulo et al. 2025; a solved start rather than sparsify's zeros).
- Inputs are centred (their mean over the same tokens subtracted) and scaled to a mean token norm of sqrt(d);
  outputs scaled likewise (an MLP's output can be a thousand times smaller than its input). Both are folded
  into the weights when the set is written (`folded`). Centring is the fix for the silent latents:
  docs/guides/transcoders.md records the experiments.
- The encoder is untied from the decoder, Gaussian at 0.1 / sqrt(d_in), so the first latents add little to
  the linear start; decoder rows are random unit vectors and stay at unit norm (Gao et al. 2024).
- Loss: normalized MSE of the MLP output plus AuxK (Gao et al. 2024) for latents silent `dead_tokens` tokens,
  weighted 1/4 rather than their 1/32: on layer 9, 400k tokens x 2 epochs, 1/32 left 17% of latents silent and 1/4
  left 2% at the same FVU (docs/guides/transcoders.md; `benchmarks/transcoder_recipe.py --layer 9 sweep`).
- Adam with warmup, linear decay to zero and the gradient norm clipped at 1 (`Schedule` in sae_train.py); the
  rate by a recorded sweep (docs/guides/transcoders.md), not a constant factor.

Resume: filling checkpoints through the store's own count; training writes each finished layer as its own
file and checkpoints the layer in progress every `checkpoint_seconds` and on Ctrl-C. Each epoch's order is
drawn from (seed, layer, epoch), so a rerun of the same command ends with the weights an uninterrupted run gets.
The set is written in circuit-tracer's layout (tools/sae/transcoders.py), which our loaders read.
"""

import dataclasses
import json
import logging
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from tqdm import tqdm

from tools.configs import TranscoderTrainConfig
from tools.data.windows import content_mask
from tools.errors import InterpError, Interrupted
from tools.interrupts import StopRequested, stop_at_batch_boundary
from tools.model.hooks import HookPoint, hook_width, n_layers, run_to_hooks
from tools.model.subject import SubjectModel, load_subject_model
from tools.passes.activation_store import ActivationStore
from tools.passes.cache import prepare_windows
from tools.passes.cache_state import load_checkpoint, save_checkpoint
from tools.passes.sae_train import Schedule, TopKTrainer
from tools.sae.autoencoder import SAE
from tools.sae.linear import ridge_fit
from tools.sae.transcoders import CIRCUIT_TRACER_CONFIG, save_circuit_tracer

log = logging.getLogger(__name__)

DEFAULT_LR = 5e-3
"""Adam's peak rate for every width: the sweep on layer 6 of Gemma 3 270M, 400k tokens x 2 epochs
(docs/guides/transcoders.md), found it best of 1e-3, 3e-3, 5e-3 and 1e-2 with this schedule: lower rates leave
latents dead, 1e-2 leaves top-k slots empty. Inputs and outputs are normalized, so it carries over."""
ENCODER_SCALE = 0.1
"""Our choice, from the recipe experiments (docs/guides/transcoders.md): at 1 / sqrt(d_in) the first latents'
noise lifted the loss above the linear start and the decaying rate never recovered it."""
CHECKPOINT = "checkpoint.pt"
RUN_FILE = "training.json"
"""Beside the set: the config it was trained with, so a rerun with another config is refused, not mixed in."""
STORE = "activations"
FINISHED = "finished_{layer}.pt"


@dataclass
class LayerStats:
    layer: int
    fvu: float
    """Of the MLP output, over the last 50 steps."""
    dead_fraction: float


@dataclass
class TranscoderTrainResult:
    out: Path
    tokens: int
    seconds: float
    layers: list[LayerStats]
    store_bytes: int
    """The activation store's size on disk while it lived."""


def chosen_layers(spec: str, total: int) -> list[int]:
    if spec == "all":
        return list(range(total))
    layers = sorted({int(part) for part in spec.split(",")})
    bad = [layer for layer in layers if layer >= total]
    if bad:
        raise InterpError(f"--layers {spec}: the model has layers 0..{total - 1}, not {bad}")
    return layers


@dataclass(frozen=True)
class Normalization:
    """What the trainer's inputs and outputs are: x_train = (x - mean_in) * scale_in, y_train = y * scale_out."""

    mean_in: torch.Tensor  # [d_in]
    scale_in: float
    scale_out: float

    @classmethod
    def of(cls, inputs: torch.Tensor, outputs: torch.Tensor) -> "Normalization":
        mean_in = inputs.mean(dim=0)
        return cls(mean_in, norm_scale(inputs - mean_in), norm_scale(outputs))

    def inputs(self, x: torch.Tensor) -> torch.Tensor:
        return (x.float() - self.mean_in) * self.scale_in

    def outputs(self, y: torch.Tensor) -> torch.Tensor:
        return y.float() * self.scale_out


def init_transcoder(inputs: torch.Tensor, outputs: torch.Tensor, layer: int, d_tc: int, k: int, skip: bool,
                    generator: torch.Generator) -> SAE:
    """The start at the linear floor, from normalized inputs [n, d_in] and outputs [n, d_out]: W_skip and b_dec
    their ridge fit (b_dec their mean without a skip), the encoder small and untied, decoder rows unit vectors."""
    d_in, d_out = inputs.shape[1], outputs.shape[1]
    W_dec = torch.randn((d_tc, d_out), generator=generator, device=inputs.device)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = torch.randn((d_in, d_tc), generator=generator, device=inputs.device) * (ENCODER_SCALE / math.sqrt(d_in))
    b_enc = -(inputs.mean(dim=0) @ W_enc)  # pre-activations centred on the start tokens
    W_skip, b_dec = ridge_fit(inputs, outputs) if skip else (None, outputs.float().mean(dim=0))
    return SAE(W_enc, b_enc, W_dec, b_dec, "topk", k=k, hook=f"mlp_in.{layer}", hook_out=f"mlp_out.{layer}",
               W_skip=W_skip)


def norm_scale(acts: torch.Tensor) -> float:
    """The factor that brings the mean token norm of `acts` [n, d] to sqrt(d)."""
    return math.sqrt(acts.shape[1]) / max(float(acts.norm(dim=1).mean()), 1e-12)


def folded(coder: SAE, normalization: Normalization) -> SAE:
    """The transcoder trained on (x - mean_in) * scale_in -> y * scale_out, as one that maps x -> y. TopK and
    ReLU commute with a positive scale, so dividing the encoder by scale_out keeps the same latents active and
    the unit-norm decoder rows as they are; the centring moves into b_enc (and, through the skip, b_dec)."""
    mean_in, scale_in, scale_out = normalization.mean_in, normalization.scale_in, normalization.scale_out
    coder.b_enc = (coder.b_enc - scale_in * (mean_in @ coder.W_enc)) / scale_out
    coder.W_enc = coder.W_enc * (scale_in / scale_out)
    if coder.W_skip is not None:
        coder.b_dec = coder.b_dec - scale_in * (mean_in @ coder.W_skip)
        coder.W_skip = coder.W_skip * (scale_in / scale_out)
    coder.b_dec = coder.b_dec / scale_out
    return coder


def recorded_config(config: TranscoderTrainConfig) -> dict:
    """What decides the weights (a checkpoint interval does not)."""
    return {key: value for key, value in dataclasses.asdict(config).items() if key != "checkpoint_seconds"}


def prepare_out(config: TranscoderTrainConfig) -> Path:
    """The output folder: new, or one this same config was training into (then the run resumes)."""
    out = Path(config.out)
    run_file = out / RUN_FILE
    if out.exists() and any(out.iterdir()):
        if (out / CIRCUIT_TRACER_CONFIG).exists() and not (out / CHECKPOINT).exists():
            raise InterpError(f"'{out}' already holds a trained transcoder set; choose another --out")
        if not run_file.exists():
            raise InterpError(f"output folder '{out}' is not empty and holds no unfinished training; choose another "
                              "--out")
        if json.loads(run_file.read_text())["config"] != recorded_config(config):
            raise InterpError(f"'{out}' holds an unfinished training with another config ({run_file}); rerun that "
                              "command to resume it, or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    run_file.write_text(json.dumps({"config": recorded_config(config)}, indent=1))
    return out


def run_transcoder_train(config: TranscoderTrainConfig, progress: bool = True,
                         d_tc: int | None = None) -> TranscoderTrainResult:
    """Train and write the set to `config.out`, resuming an interrupted run of the same config; `d_tc` sets the
    width where it is not a multiple of the input's (a random-model control matching another set's)."""
    config.validate()
    out = prepare_out(config)
    subject = load_subject_model(config.model, config.device, config.dtype)
    layers = chosen_layers(config.layers, n_layers(subject.model))
    d_model = hook_width(subject.model, HookPoint("mlp_in", layers[0]))
    d_tc = d_tc or config.expansion * d_model
    started = time.monotonic()
    store = ActivationStore.open(out / STORE, layers, d_model, {"model": config.model, "corpus": config.corpus,
                                                                 "window": config.window, "seed": config.seed})
    fill_store(config, subject, layers, store, progress)
    if store.tokens < config.batch_tokens:
        raise InterpError(f"the corpus's train part holds {store.tokens:,} real tokens, fewer than one step of "
                          f"--batch-tokens {config.batch_tokens}; give a larger corpus or a smaller --batch-tokens")
    if store.tokens < config.tokens:
        log.info(f"note: the corpus's train part ran out after {store.tokens:,} tokens")
    store_bytes = store.tokens * store.bytes_per_token
    log.info(f"training {len(layers)} TopK transcoders ({d_tc} latents, k={config.k}, skip "
             f"{'on' if config.skip else 'off'}) of {config.model} on {store.tokens:,} tokens x {config.epochs} "
             f"epochs; the activation store takes {store_bytes / 2**30:.2f} GiB")
    stats = []
    for layer in layers:
        stats.append(train_layer(config, store, layer, d_tc, subject.device, out, progress))
    coders = [load_finished(out, layer, subject.device) for layer in layers]
    for coder in coders:
        coder.metadata = {"model_name": config.model, "trained_by": "interp-agent", "training_tokens": store.tokens,
                          "epochs": config.epochs}
    save_circuit_tracer(coders, out, scan=f"interp-agent/{Path(config.out).name}")
    for layer in layers:
        (out / FINISHED.format(layer=layer)).unlink(missing_ok=True)
    shutil.rmtree(out / STORE, ignore_errors=True)
    return TranscoderTrainResult(out, store.tokens, time.monotonic() - started, stats, store_bytes)


def fill_store(config: TranscoderTrainConfig, subject: SubjectModel, layers: list[int], store: ActivationStore,
               progress: bool) -> None:
    """One forward pass over the train windows until the store holds `config.tokens` real tokens (or the corpus
    ends); the store's own count is the resume point."""
    # The budget counts real tokens, so take enough windows to cover BOS and separators too.
    window_config = dataclasses.replace(config, tokens=int(config.tokens * 1.1) + config.init_tokens)
    windows = prepare_windows(window_config, subject, part="train")  # type: ignore[arg-type]
    hooks = [HookPoint(site, layer) for layer in layers for site in ("mlp_in", "mlp_out")]
    start = store.state.windows_done
    bar = tqdm(total=config.tokens, initial=min(store.tokens, config.tokens), unit="tok", unit_scale=True,
               disable=not progress, desc="cache activations")
    with bar, stop_at_batch_boundary() as request, torch.inference_mode():
        try:
            while start < len(windows) and store.tokens < config.tokens:
                input_ids = windows[start:start + config.model_batch_size].to(subject.device)
                acts = run_to_hooks(subject.model, input_ids, hooks)
                mask = content_mask(input_ids, subject.tokenizer)
                start += len(input_ids)
                before, room = store.tokens, config.tokens - store.tokens  # the budget, exactly
                store.append({layer: (acts[f"mlp_in.{layer}"][mask][:room], acts[f"mlp_out.{layer}"][mask][:room])
                              for layer in layers}, start)
                bar.update(store.tokens - before)
                if request["stop"]:
                    raise StopRequested
        except StopRequested:
            raise Interrupted("interrupted; rerun the same command to resume where it stopped") from None


def epoch_order(config: TranscoderTrainConfig, layer: int, epoch: int, tokens: int) -> torch.Tensor:
    """The shuffle of one epoch across the whole store, from (seed, layer, epoch) alone, so a resumed layer
    walks the same order."""
    generator = torch.Generator().manual_seed(config.seed * 1_000_003 + layer * 1_009 + epoch)
    return torch.randperm(tokens, generator=generator)


def train_layer(config: TranscoderTrainConfig, store: ActivationStore, layer: int, d_tc: int, device: torch.device,
                out: Path, progress: bool) -> LayerStats:
    """One layer's transcoder, `config.epochs` passes over the store; written to its own finished file."""
    finished = out / FINISHED.format(layer=layer)
    if finished.exists():
        saved = load_checkpoint(finished, device)
        return LayerStats(layer, float(saved["fvu"]), float(saved["dead_fraction"]))
    inputs, outputs = store.rows("in", layer).clone(), store.rows("out", layer).clone()  # [tokens, d] bf16
    first = slice(0, min(config.init_tokens, len(inputs)))
    start_in, start_out = inputs[first].to(device).float(), outputs[first].to(device).float()
    normalization = Normalization.of(start_in, start_out)
    steps_per_epoch = len(inputs) // config.batch_tokens
    schedule = Schedule(config.lr or DEFAULT_LR, max(1, steps_per_epoch * config.epochs))
    generator = torch.Generator(device=device).manual_seed(config.seed * 1_009 + layer)
    coder = init_transcoder(normalization.inputs(start_in), normalization.outputs(start_out), layer, d_tc, config.k,
                            config.skip, generator)
    trainer = TopKTrainer(coder, schedule, config.auxk_alpha, config.dead_tokens)
    checkpoint = out / CHECKPOINT
    if checkpoint.exists():
        state = load_checkpoint(checkpoint, device)
        if int(state["layer"]) == layer:
            trainer.load_state_dict(state["trainer"])
            log.info(f"layer {layer}: resuming at step {trainer.steps:,} of {schedule.total_steps:,}")
    bar = tqdm(total=schedule.total_steps, initial=trainer.steps, unit="step", disable=not progress,
               desc=f"train layer {layer}")
    last_checkpoint = time.monotonic()
    order_epoch, order = -1, torch.empty(0, dtype=torch.long)
    with bar, stop_at_batch_boundary() as request:
        try:
            while trainer.steps < schedule.total_steps:
                epoch, step = divmod(trainer.steps, steps_per_epoch)
                if epoch != order_epoch:
                    order_epoch, order = epoch, epoch_order(config, layer, epoch, len(inputs))
                batch = order[step * config.batch_tokens:(step + 1) * config.batch_tokens]
                trainer.step(normalization.inputs(inputs[batch].to(device)),
                             normalization.outputs(outputs[batch].to(device)))
                bar.update(1)
                if trainer.steps % 50 == 0:
                    bar.set_postfix(fvu=f"{trainer.fvu:.3f}", dead=f"{trainer.dead_fraction:.1%}", refresh=False)
                if request["stop"] or time.monotonic() - last_checkpoint >= config.checkpoint_seconds:
                    save_checkpoint(checkpoint, {"layer": layer, "trainer": trainer.state_dict()})
                    last_checkpoint = time.monotonic()
                if request["stop"]:
                    raise StopRequested
        except StopRequested:
            raise Interrupted("interrupted; rerun the same command to resume from the last checkpoint") from None
    coder = folded(trainer.finished(), normalization)
    stats = LayerStats(layer, trainer.fvu, trainer.dead_fraction)
    save_checkpoint(finished, {name: getattr(coder, name) for name in ("W_enc", "b_enc", "W_dec", "b_dec")} |
                    ({"W_skip": coder.W_skip} if coder.W_skip is not None else {}) |
                    {"k": coder.k, "fvu": stats.fvu, "dead_fraction": stats.dead_fraction})
    checkpoint.unlink(missing_ok=True)
    return stats


def load_finished(out: Path, layer: int, device: torch.device) -> SAE:
    saved = load_checkpoint(out / FINISHED.format(layer=layer), device)
    return SAE(saved["W_enc"], saved["b_enc"], saved["W_dec"], saved["b_dec"], "topk", k=int(saved["k"]),
               hook=f"mlp_in.{layer}", hook_out=f"mlp_out.{layer}", W_skip=saved.get("W_skip"))
