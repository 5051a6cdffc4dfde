"""Training a TopK SAE (Gao et al. 2024) on activations streamed from the subject model.

The SAE being trained is the same `SAE` object that inference uses, its tensors made leaf parameters,
so encode and decode exist once. Per step: loss = normalized MSE + auxk_alpha * AuxK, where AuxK asks
the latents that have been dead for `dead_tokens` tokens to reconstruct the residual error (target minus
prediction) with their own top-k (which gives them gradient again). After each Adam step the decoder rows go
back to unit norm, and the gradient component along each row is removed first so Adam does not fight the norm.
The gradient norm is clipped; the rate is constant here, while the transcoder trainer warms up and decays
(`Schedule`).
"""

import dataclasses
import logging
import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from tools.configs import TrainConfig
from tools.data.windows import content_mask
from tools.errors import InterpError
from tools.model.hooks import HookPoint, hf_module_path, hook_width, n_layers, parse_hook, run_to_hooks
from tools.model.subject import SubjectModel, load_subject_model
from tools.passes.cache import prepare_windows
from tools.sae.autoencoder import SAE

log = logging.getLogger(__name__)

DEFAULT_LR_AT_16K = 2e-4


@dataclass
class TrainStats:
    tokens: int
    steps: int
    fvu: float
    """Fraction of variance unexplained over the last 50 steps."""
    dead_fraction: float
    seconds: float


def init_sae(sample: torch.Tensor, d_sae: int, k: int, generator: torch.Generator) -> SAE:
    """Decoder rows random unit vectors, encoder their transpose, b_dec the sample mean."""
    d_in = sample.shape[1]
    W_dec = torch.randn((d_sae, d_in), generator=generator, device=sample.device)
    W_dec /= W_dec.norm(dim=1, keepdim=True)
    return SAE(W_dec.T.clone(), torch.zeros(d_sae, device=sample.device), W_dec,
               sample.float().mean(dim=0), activation="topk", k=k, apply_b_dec_to_input=True)


def normalized_mse(error: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return error.pow(2).sum() / (target - target.mean(dim=0)).pow(2).sum().clamp_min(1e-12)


def decode_sparse(W_dec: torch.Tensor, indices: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """sum_j values[:, j] * W_dec[indices[:, j]]: a decode from the k active latents of each token [N, k], at
    N x k x d_out multiply-adds and its backward as cheap, instead of a dense [N, d_sae] @ W_dec."""
    return F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")


def auxk_loss(coder: SAE, pre: torch.Tensor, error: torch.Tensor, dead: torch.Tensor) -> torch.Tensor:
    """The dead latents' own top k_aux pre-activations (`pre` [N, d_sae], the main step's) predict what the live
    latents missed, `error` = target - prediction: the sign of Gao et al. (2024), OpenAI's sparse_autoencoder,
    sparsify (`e = y - sae_out`) and dictionary_learning. k_aux = d_out / 2 as in Gao et al. (appendix B.1)."""
    n_dead = int(dead.sum())
    if n_dead == 0:
        return pre.new_zeros(())
    k_aux = min(n_dead, coder.d_out // 2)
    top = pre.masked_fill(~dead, float("-inf")).topk(k_aux, dim=-1)
    missed = error.detach()
    return normalized_mse(decode_sparse(coder.W_dec, top.indices, torch.relu(top.values)) - missed, missed)


@dataclass(frozen=True)
class Schedule:
    """The learning rate of each step: a linear warmup over the first `warmup` of the steps (SAELens's and
    sparsify's warmup steps), then a linear decay to zero at `total_steps` (dictionary_learning's TopK trainer
    and SAELens's decay steps decay too; the saved weights are then the end of a decay, not the last noisy step).
    `clip` bounds the gradient norm: our own guard against a first step far too large, chosen here rather than
    taken from a named trainer."""

    lr: float
    total_steps: int
    warmup: float = 0.05
    clip: float = 1.0
    decay: bool = True
    """False: the rate stays at `lr` after the warmup (the SAE trainer's rate was set for that)."""

    def at(self, step: int) -> float:
        warmup_steps = round(self.warmup * self.total_steps)
        if step < warmup_steps:
            return self.lr * (step + 1) / warmup_steps
        if not self.decay:
            return self.lr
        return self.lr * max(0.0, (self.total_steps - step) / max(self.total_steps - warmup_steps, 1))


def batches_of(buffers: Iterable[torch.Tensor], batch_tokens: int,
               generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Shuffle each activation buffer [n, d_in] and cut it into training batches."""
    for buffer in buffers:
        order = torch.randperm(len(buffer), generator=generator, device=buffer.device)
        for start in range(0, len(buffer) - batch_tokens + 1, batch_tokens):
            yield buffer[order[start:start + batch_tokens]].float()


@dataclass
class StepLosses:
    main: torch.Tensor
    """Normalized MSE of the prediction: the step's FVU."""
    aux: torch.Tensor | None
    """AuxK's loss, unweighted; None when its weight is 0."""
    fired: torch.Tensor
    """[d_sae] bool: the latents active on some token of the batch."""
    dead: torch.Tensor
    """[d_sae] bool: the latents AuxK counted as dead."""
    error: torch.Tensor
    """[N, d_out], detached: target minus prediction."""


class TopKTrainer:
    """One TopK coder trained step by step: an SAE (its target is its input) or a transcoder (its target is the
    MLP's output). The coder's own tensors are the leaf parameters and its own `pre_activations` ranks the
    latents, so the trained maths is the maths inference runs; the decode reads only the k active latents."""

    def __init__(self, coder: SAE, schedule: Schedule, auxk_alpha: float, dead_tokens: int):
        self.coder = coder
        self.schedule = schedule
        self.auxk_alpha = auxk_alpha
        self.dead_tokens = dead_tokens
        self.parameters = [coder.W_enc, coder.b_enc, coder.W_dec, coder.b_dec]
        if coder.W_skip is not None:
            self.parameters.append(coder.W_skip)
        for parameter in self.parameters:
            parameter.requires_grad_(True)
        self.optimizer = torch.optim.Adam(self.parameters, lr=schedule.at(0), betas=(0.9, 0.999))
        self.since_fired = torch.zeros(coder.d_sae, dtype=torch.long, device=coder.W_enc.device)
        self.recent_fvu: list[float] = []
        self.tokens = 0
        self.steps = 0

    def step(self, x: torch.Tensor, target: torch.Tensor) -> None:
        losses = self.losses(x, target)
        self.optimizer.zero_grad(set_to_none=True)
        self.backward(losses.main, losses.aux)
        self.update(losses, len(x))

    def losses(self, x: torch.Tensor, target: torch.Tensor) -> "StepLosses":
        """The step's main loss and (with a weight above 0) its AuxK loss, before any backward."""
        coder = self.coder
        pre = coder.pre_activations(x)  # [N, d_sae], reused by AuxK
        assert coder.k is not None  # TopK coders only
        top = pre.topk(coder.k, dim=-1)
        values = torch.relu(top.values)  # [N, k]
        prediction = decode_sparse(coder.W_dec, top.indices, values) + coder.b_dec
        if coder.W_skip is not None:
            prediction = prediction + x @ coder.W_skip
        error = target - prediction
        dead = self.since_fired >= self.dead_tokens
        aux = auxk_loss(coder, pre, error, dead) if self.auxk_alpha > 0 else None
        fired = torch.zeros(coder.d_sae, dtype=torch.bool, device=x.device)
        fired[top.indices[values > 0]] = True
        return StepLosses(normalized_mse(error, target), aux, fired, dead, error.detach())

    def backward(self, main: torch.Tensor, aux: torch.Tensor | None) -> None:
        (main if aux is None else main + self.auxk_alpha * aux).backward()
        self.project_decoder_grad()
        torch.nn.utils.clip_grad_norm_(self.parameters, self.schedule.clip)

    def project_decoder_grad(self) -> None:
        """Remove the part of the decoder gradient that would only change row norms."""
        with torch.no_grad():
            rows = self.coder.W_dec
            assert rows.grad is not None  # just filled by backward()
            rows.grad -= (rows.grad * rows).sum(dim=1, keepdim=True) * rows

    def update(self, losses: "StepLosses", n_tokens: int) -> None:
        """The optimizer's step at this step's rate, unit decoder rows, and the dead-latent bookkeeping."""
        for group in self.optimizer.param_groups:
            group["lr"] = self.schedule.at(self.steps)
        self.optimizer.step()
        with torch.no_grad():
            self.coder.W_dec /= self.coder.W_dec.norm(dim=1, keepdim=True)
            self.since_fired = torch.where(losses.fired, 0, self.since_fired + n_tokens)
            self.recent_fvu = (self.recent_fvu + [float(losses.main)])[-50:]
        self.tokens += n_tokens
        self.steps += 1

    @property
    def fvu(self) -> float:
        """Over the last 50 steps."""
        return sum(self.recent_fvu) / max(len(self.recent_fvu), 1)

    @property
    def dead_fraction(self) -> float:
        return float((self.since_fired >= self.dead_tokens).float().mean())

    def finished(self) -> SAE:
        for name in ("W_enc", "b_enc", "W_dec", "b_dec", "W_skip"):
            tensor = getattr(self.coder, name)
            if tensor is not None:
                setattr(self.coder, name, tensor.detach())
        return self.coder

    def state_dict(self) -> dict:
        """Everything a resumed run needs, as plain tensors and numbers (checkpoints load weights_only)."""
        return {"parameters": [parameter.detach().clone() for parameter in self.parameters],
                "optimizer": self.optimizer.state_dict(), "since_fired": self.since_fired,
                "recent_fvu": list(self.recent_fvu), "tokens": self.tokens, "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        with torch.no_grad():
            for parameter, saved in zip(self.parameters, state["parameters"], strict=True):
                parameter.copy_(saved)
        self.optimizer.load_state_dict(state["optimizer"])
        self.since_fired = state["since_fired"].to(self.since_fired.device)
        self.recent_fvu = list(state["recent_fvu"])
        self.tokens, self.steps = int(state["tokens"]), int(state["steps"])


def default_lr(d_sae: int) -> float:
    """The scaling rule of Gao et al. (2024)."""
    return DEFAULT_LR_AT_16K / math.sqrt(d_sae / 16384)


def train_topk_sae(buffers: Iterable[torch.Tensor], d_sae: int, k: int, total_tokens: int, batch_tokens: int = 1024,
                   lr: float = 0.0, auxk_alpha: float = 1 / 32, dead_tokens: int = 50_000, seed: int = 0,
                   progress: bool = True) -> tuple[SAE, TrainStats]:
    """Train on activation buffers ([n, d_in] each, any device) until `total_tokens` have been seen."""
    start = time.monotonic()
    buffers = iter(buffers)
    first = next(buffers)
    generator = torch.Generator(device=first.device).manual_seed(seed)
    # A constant rate, as this trainer has always had: Gao et al.'s rate for its width was set for it; the
    # transcoder trainer's warmup and decay came with a rate swept for them.
    schedule = Schedule(lr or default_lr(d_sae), max(1, total_tokens // batch_tokens), warmup=0.0, decay=False)
    trainer = TopKTrainer(init_sae(first[:batch_tokens * 4], d_sae, k, generator), schedule, auxk_alpha, dead_tokens)
    bar = tqdm(total=total_tokens, unit="tok", unit_scale=True, disable=not progress, desc="train SAE")
    with bar:
        for x in batches_of(_chain(first, buffers), batch_tokens, generator):
            trainer.step(x, x)
            bar.update(len(x))
            bar.set_postfix(fvu=f"{trainer.recent_fvu[-1]:.3f}", dead=f"{trainer.dead_fraction:.1%}", refresh=False)
            if trainer.tokens >= total_tokens:
                break
    sae = trainer.finished()
    return sae, TrainStats(trainer.tokens, trainer.steps, trainer.fvu, trainer.dead_fraction,
                           time.monotonic() - start)


def _chain(first: torch.Tensor, rest: Iterator[torch.Tensor]) -> Iterator[torch.Tensor]:
    yield first
    yield from rest


def activation_buffers(subject: SubjectModel, hook: HookPoint, windows: torch.Tensor, model_batch_size: int,
                       buffer_tokens: int) -> Iterator[torch.Tensor]:
    """Real-token activations at `hook` [n, d_in], gathered into buffers of about `buffer_tokens`."""
    pending: list[torch.Tensor] = []
    pending_tokens = 0
    for start in range(0, len(windows), model_batch_size):
        input_ids = windows[start:start + model_batch_size].to(subject.device)
        acts = run_to_hooks(subject.model, input_ids, [hook])[hook.name]  # [B, seq, d_in]
        real = acts[content_mask(input_ids, subject.tokenizer)].float()  # [n, d_in]
        pending.append(real)
        pending_tokens += len(real)
        if pending_tokens >= buffer_tokens:
            yield torch.cat(pending)
            pending, pending_tokens = [], 0
    if pending:
        yield torch.cat(pending)


def run_sae_train(config: TrainConfig, progress: bool = True, d_sae: int | None = None) -> tuple[Path, TrainStats]:
    """Train on the corpus's train part and write the SAE in SAELens format to `config.out`; `d_sae` sets the
    width where it is not a multiple of the input's (a random-model control matching another SAE's)."""
    config.validate()
    out = Path(config.out)
    if out.exists() and any(out.iterdir()):
        raise InterpError(f"output folder '{out}' is not empty; choose another --out")
    subject = load_subject_model(config.model, config.device, config.dtype)
    hook = parse_hook(config.hook, n_layers(subject.model))
    d_in = hook_width(subject.model, hook)
    d_sae = d_sae or config.expansion * d_in
    # The budget counts real tokens, so take enough windows to cover BOS and separators too.
    window_config = dataclasses.replace(config, tokens=int(config.tokens * 1.1) + config.buffer_tokens)
    windows = prepare_windows(window_config, subject, part="train")
    log.info(f"training a TopK SAE ({d_sae} latents, k={config.k}) at {hook.name} of "
          f"{config.model} on {config.tokens:,} tokens")
    buffers = activation_buffers(subject, hook, windows, config.model_batch_size, config.buffer_tokens)
    sae, stats = train_topk_sae(buffers, d_sae, config.k, config.tokens, config.batch_tokens,
                                config.lr, config.auxk_alpha, config.dead_tokens, config.seed, progress)
    if stats.tokens < config.tokens:
        log.info(f"note: the corpus's train part ran out after {stats.tokens:,} tokens")
    sae.hook = hook.name
    sae.metadata = {"model_name": config.model, "trained_by": "interp-agent", "training_tokens": stats.tokens,
                    "training_config": dataclasses.asdict(config)}
    sae.save_saelens(out, hf_hook_name=hf_module_path(subject.model, hook))
    log.info(f"saved to {out}: {stats.steps} steps, training FVU {stats.fvu:.3f}, dead {stats.dead_fraction:.1%}, "
          f"{stats.tokens / stats.seconds:,.0f} tokens/s (model forward and SAE training together)")
    return out, stats
