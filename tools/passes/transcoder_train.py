"""Training TopK transcoders for many layers in one streaming pass of the subject model.

Each forward captures every chosen layer's MLP input (`mlp_in.L`) and output (`mlp_out.L`); the real tokens go
into one buffer per layer, and when the buffers are full each layer's transcoder trains on its own buffer,
shuffled (`TopKTrainer`: normalized MSE of the predicted MLP output plus AuxK, decoder rows at unit norm).
Inputs and outputs are scaled to a mean token norm of sqrt(d_model) while training, so one learning rate suits
every layer and every model (an MLP's output can be a thousand times smaller than its input); the scales are
folded into the weights at the end, which keeps the decoder rows at unit norm and the latents in the units of
the MLP's output. Memory
is the transcoders and their Adam moments (layers x width) plus the buffers (layers x 2 x buffer_tokens x
d_model), never the corpus.

The run checkpoints at buffer boundaries (every `checkpoint_seconds`, and when Ctrl-C asks it to stop), where
nothing is half-trained: the transcoders, the optimizers, the shuffling generator and how many windows were
read. A rerun of the same command resumes there and ends with the same weights an uninterrupted run gets.
The set is written in circuit-tracer's layout (tools/sae/transcoders.py), which our loaders read.
"""

import dataclasses
import json
import logging
import math
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
from tools.passes.cache import prepare_windows
from tools.passes.cache_state import load_checkpoint, save_checkpoint
from tools.passes.sae_train import TopKTrainer, default_lr
from tools.sae.autoencoder import SAE
from tools.sae.transcoders import CIRCUIT_TRACER_CONFIG, save_circuit_tracer

log = logging.getLogger(__name__)

LR_FACTOR = 10
"""The default learning rate is ten times the SAE rule (Gao et al. 2024): the default budget is a few hundred
steps, not hundreds of thousands. At the SAE rule, 65,536 tokens (64 steps) left Gemma 3 270M's transcoders at
training FVU 0.87-1.5, no better than predicting the mean (docs/guides/transcoders.md)."""
CHECKPOINT = "checkpoint.pt"
RUN_FILE = "training.json"
"""Beside the set: the config it was trained with, so a rerun with another config is refused, not mixed in."""


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


def chosen_layers(spec: str, total: int) -> list[int]:
    if spec == "all":
        return list(range(total))
    layers = sorted({int(part) for part in spec.split(",")})
    bad = [layer for layer in layers if layer >= total]
    if bad:
        raise InterpError(f"--layers {spec}: the model has layers 0..{total - 1}, not {bad}")
    return layers


def init_transcoder(inputs: torch.Tensor, outputs: torch.Tensor, layer: int, d_tc: int, k: int, skip: bool,
                    generator: torch.Generator) -> SAE:
    """Decoder rows random unit vectors, the encoder their transpose, b_dec the mean MLP output, the skip 0."""
    d_in, d_out = inputs.shape[1], outputs.shape[1]
    W_dec = torch.randn((d_tc, d_out), generator=generator, device=inputs.device)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    W_enc = torch.randn((d_in, d_tc), generator=generator, device=inputs.device) / math.sqrt(d_in) \
        if d_in != d_out else W_dec.T.clone()
    return SAE(W_enc, torch.zeros(d_tc, device=inputs.device), W_dec, outputs.float().mean(dim=0), "topk", k=k,
               hook=f"mlp_in.{layer}", hook_out=f"mlp_out.{layer}",
               W_skip=torch.zeros((d_in, d_out), device=inputs.device) if skip else None)


class LayerBuffers:
    """Each layer's real-token MLP inputs and outputs since the last training round."""

    def __init__(self, layers: list[int]):
        self.layers = layers
        self.inputs: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        self.outputs: dict[int, list[torch.Tensor]] = {layer: [] for layer in layers}
        self.tokens = 0

    def add(self, acts: dict[str, torch.Tensor], mask: torch.Tensor) -> None:
        for layer in self.layers:
            self.inputs[layer].append(acts[f"mlp_in.{layer}"][mask].float())
            self.outputs[layer].append(acts[f"mlp_out.{layer}"][mask].float())
        self.tokens += int(mask.sum())

    def take(self, layer: int) -> tuple[torch.Tensor, torch.Tensor]:
        inputs, outputs = torch.cat(self.inputs[layer]), torch.cat(self.outputs[layer])
        self.inputs[layer], self.outputs[layer] = [], []
        return inputs, outputs


def norm_scale(acts: torch.Tensor) -> float:
    """The factor that brings the mean token norm of `acts` [n, d] to sqrt(d)."""
    return math.sqrt(acts.shape[1]) / max(float(acts.norm(dim=1).mean()), 1e-12)


def folded(coder: SAE, scale_in: float, scale_out: float) -> SAE:
    """The transcoder trained on x * scale_in -> y * scale_out, as one that maps x -> y. TopK and ReLU commute
    with a positive scale, so dividing the encoder by scale_out keeps the same latents active and the unit-norm
    decoder rows as they are."""
    coder.W_enc = coder.W_enc * (scale_in / scale_out)
    coder.b_enc = coder.b_enc / scale_out
    coder.b_dec = coder.b_dec / scale_out
    if coder.W_skip is not None:
        coder.W_skip = coder.W_skip * (scale_in / scale_out)
    return coder


class TranscoderSetTrainer:
    """One TopKTrainer per layer, made from the first buffer with its layer's input and output scales, and the
    generator that shuffles every buffer."""

    def __init__(self, config: TranscoderTrainConfig, layers: list[int], d_model: int, device: torch.device,
                 d_tc: int | None = None):
        self.config = config
        self.layers = layers
        self.d_tc = d_tc or config.expansion * d_model
        self.generator = torch.Generator(device=device).manual_seed(config.seed)
        self.trainers: dict[int, TopKTrainer] = {}
        self.scales: dict[int, tuple[float, float]] = {}
        self.windows_done = 0
        self.lr = config.lr or LR_FACTOR * default_lr(self.d_tc)

    def train_round(self, buffers: LayerBuffers, budget_left: int) -> int:
        """Train every layer on its buffer (the same shuffle for all, so they see the same tokens); returns the
        tokens each layer trained on."""
        config = self.config
        n = min(buffers.tokens, budget_left)
        n -= n % config.batch_tokens
        order = torch.randperm(buffers.tokens, generator=self.generator, device=self.generator.device)[:n]
        buffers.tokens = 0
        for layer in self.layers:
            inputs, outputs = buffers.take(layer)
            if layer not in self.trainers:
                sample = slice(0, 4 * config.batch_tokens)
                self.scales[layer] = (norm_scale(inputs[sample]), norm_scale(outputs[sample]))
                scale_in, scale_out = self.scales[layer]
                coder = init_transcoder(inputs[sample] * scale_in, outputs[sample] * scale_out, layer,
                                        self.d_tc, config.k, config.skip, self.generator)
                self.trainers[layer] = TopKTrainer(coder, self.lr, config.auxk_alpha, config.dead_tokens)
            trainer = self.trainers[layer]
            scale_in, scale_out = self.scales[layer]
            for start in range(0, n, config.batch_tokens):
                batch = order[start:start + config.batch_tokens]
                trainer.step(inputs[batch] * scale_in, outputs[batch] * scale_out)
        return n

    def finished(self, layer: int) -> SAE:
        return folded(self.trainers[layer].finished(), *self.scales[layer])

    @property
    def tokens(self) -> int:
        return min((trainer.tokens for trainer in self.trainers.values()), default=0)

    def state_dict(self) -> dict:
        return {"windows_done": self.windows_done, "generator": self.generator.get_state(),
                "trainers": {str(layer): trainer.state_dict() for layer, trainer in self.trainers.items()},
                "scales": {str(layer): torch.tensor(scales, dtype=torch.float64)
                           for layer, scales in self.scales.items()},
                "coders": {str(layer): {"W_skip": trainer.coder.W_skip is not None}
                           for layer, trainer in self.trainers.items()}}

    def load_state_dict(self, state: dict, d_model: int, device: torch.device) -> None:
        self.windows_done = int(state["windows_done"])
        self.generator.set_state(state["generator"].cpu())
        for key, saved in state["trainers"].items():
            layer = int(key)
            empty = torch.zeros((1, d_model), device=device)
            coder = init_transcoder(empty, empty, layer, self.d_tc, self.config.k,
                                    bool(state["coders"][key]["W_skip"]), torch.Generator(device=device))
            trainer = TopKTrainer(coder, self.lr, self.config.auxk_alpha, self.config.dead_tokens)
            trainer.load_state_dict(saved)
            self.trainers[layer] = trainer
            scale_in, scale_out = state["scales"][key].tolist()
            self.scales[layer] = (scale_in, scale_out)


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
    window_config = dataclasses.replace(config, tokens=int(config.tokens * 1.1) + config.buffer_tokens)
    windows = prepare_windows(window_config, subject, part="train")  # type: ignore[arg-type]
    trainer = TranscoderSetTrainer(config, layers, d_model, subject.device, d_tc)
    checkpoint = out / CHECKPOINT
    if checkpoint.exists():
        trainer.load_state_dict(load_checkpoint(checkpoint, subject.device), d_model, subject.device)
        log.info(f"resuming at {trainer.tokens:,} tokens ({trainer.windows_done} windows read)")
    log.info(f"training {len(layers)} TopK transcoders ({trainer.d_tc} latents, k={config.k}, skip "
             f"{'on' if config.skip else 'off'}) of {config.model} on {config.tokens:,} tokens in one pass")
    started = time.monotonic()
    tokens = stream(config, subject, layers, windows, trainer, checkpoint, progress)
    seconds = time.monotonic() - started
    if tokens < config.tokens:
        log.info(f"note: the corpus's train part ran out after {tokens:,} tokens")
    coders = [trainer.finished(layer) for layer in layers]
    for coder in coders:
        coder.metadata = {"model_name": config.model, "trained_by": "interp-agent", "training_tokens": tokens}
    save_circuit_tracer(coders, out, scan=f"interp-agent/{Path(config.out).name}")
    checkpoint.unlink(missing_ok=True)
    stats = [LayerStats(layer, trainer.trainers[layer].fvu, trainer.trainers[layer].dead_fraction) for layer in layers]
    return TranscoderTrainResult(out, tokens, seconds, stats)


def stream(config: TranscoderTrainConfig, subject: SubjectModel, layers: list[int], windows: torch.Tensor,
           trainer: TranscoderSetTrainer, checkpoint: Path, progress: bool) -> int:
    """Forward, buffer, train a round when the buffers are full; checkpoint between rounds."""
    hooks = [HookPoint(site, layer) for layer in layers for site in ("mlp_in", "mlp_out")]
    buffers = LayerBuffers(layers)
    bar = tqdm(total=config.tokens, initial=trainer.tokens, unit="tok", unit_scale=True, disable=not progress,
               desc="train transcoders")
    last_checkpoint = time.monotonic()
    with bar, stop_at_batch_boundary() as request:
        try:
            start = trainer.windows_done
            # Steps are whole batches: a budget left smaller than one batch is spent.
            while start < len(windows) and config.tokens - trainer.tokens >= config.batch_tokens:
                input_ids = windows[start:start + config.model_batch_size].to(subject.device)
                buffers.add(run_to_hooks(subject.model, input_ids, hooks), content_mask(input_ids, subject.tokenizer))
                start += len(input_ids)
                last_window = start >= len(windows)
                if buffers.tokens < config.buffer_tokens and not last_window:
                    continue
                trained = trainer.train_round(buffers, config.tokens - trainer.tokens)
                trainer.windows_done = start
                bar.update(trained)
                worst = max(trainer.trainers.values(), key=lambda t: t.fvu)
                bar.set_postfix(worst_fvu=f"{worst.fvu:.3f}", refresh=False)
                if request["stop"] or time.monotonic() - last_checkpoint >= config.checkpoint_seconds:
                    save_checkpoint(checkpoint, trainer.state_dict())
                    last_checkpoint = time.monotonic()
                if request["stop"]:
                    raise StopRequested
        except StopRequested:
            raise Interrupted("interrupted; rerun the same command to resume from the last checkpoint") from None
    return trainer.tokens
