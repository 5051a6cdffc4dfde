"""What the caching pass accumulates and how one batch is folded into it: shared by the single-process pass
(tools/passes/cache.py) and its Ray workers (tools/passes/cache_ray.py), so both fold every batch the same way.
"""

import hashlib
import os
import pickle
from pathlib import Path

import numpy as np
import torch

from tools.configs import CacheConfig
from tools.data.streaming import NO_KEY, FeatureStats, KeepLargest, RandomWindows
from tools.data.window_codes import WindowCodes
from tools.data.windows import content_mask
from tools.errors import InterpError
from tools.features import FeatureSource
from tools.model.subject import SubjectModel
from tools.sae.autoencoder import SparseCodes

STATE_LAYOUT = 2
"""Bumped when the checkpointed state changes meaning (2: random negatives planned before the pass), so an
older checkpoint is refused instead of resumed into a mixed state."""


def save_checkpoint(path: Path, state: dict) -> None:
    """A state dict (the pass's, or one Ray shard's) written whole or not at all."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    torch.save(state, partial)
    os.replace(partial, path)


def load_checkpoint(path: Path, device: torch.device | str) -> dict:
    """Tensors and numbers only (weights_only): a checkpoint file is never a way to run code."""
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except (RuntimeError, EOFError, OSError, pickle.UnpicklingError) as error:
        raise InterpError(f"resume checkpoint '{path}' is unreadable ({str(error).splitlines()[0][:120]}); delete it "
                          "to start the run over") from None


class CacheState:
    """Everything the pass accumulates; its tensors are the checkpoint. `sparse` (SAE latents): slots keep
    window ids only and the windows' non-zero codes are kept once, in `codes`."""

    def __init__(self, config: CacheConfig, n_features: int, n_windows: int, device: torch.device,
                 sparse: bool = False):
        length = 0 if sparse else config.window
        self.top = KeepLargest(n_features, config.top_k, length, device)
        self.reservoir = KeepLargest(n_features, 2 * config.quantiles * config.per_quantile, length, device)
        plan_seed = int(hashlib.sha256(f"random negatives {config.seed}".encode()).hexdigest()[:15], 16)
        plan = torch.Generator().manual_seed(plan_seed)
        self.random = RandomWindows(n_features, max(config.random, 1), length, device, n_windows, plan)
        self.stats = FeatureStats(n_features, config.histogram_bins, config.threshold, device)
        self.codes = WindowCodes(n_features) if sparse else None
        self.window = config.window
        self.next_batch = 0

    def streamed(self, n_windows: int, batch_size: int) -> bool:
        """Every batch folded in: the state is final, and safe to checkpoint at any moment."""
        return self.next_batch * batch_size >= n_windows

    def state_dict(self) -> dict:
        return {
            "layout": STATE_LAYOUT,
            "next_batch": self.next_batch,
            "top": self.top.state_dict(),
            "reservoir": self.reservoir.state_dict(),
            "random": self.random.state_dict(),
            "stats": self.stats.state_dict(),
        } | ({"codes": self.codes.state_dict()} if self.codes is not None else {})

    def load_state_dict(self, state: dict) -> None:
        if ("codes" in state) != (self.codes is not None) or state.get("layout") != STATE_LAYOUT or \
                state["top"]["values"].shape != self.top.values.shape:
            raise ValueError("the checkpoint holds another layout of the state (written by another version)")
        self.next_batch = state["next_batch"]
        for name in ("top", "reservoir", "random", "stats", *(("codes",) if self.codes is not None else ())):
            getattr(self, name).load_state_dict(state[name])

    def merge_state_dict(self, state: dict, low: int, high: int) -> None:
        """Fold in the state of a shard that streamed windows [low, high) (a Ray worker's), shards in window
        order: the same selections and statistics one pass over both would hold."""
        self.top.merge(self.top._replaced(state["top"]))
        self.reservoir.merge(self.reservoir._replaced(state["reservoir"]))
        self.random.merge_filled(self.random._replaced(state["random"]), low, high)  # type: ignore[arg-type]
        theirs = FeatureStats.__new__(FeatureStats)
        theirs.__dict__.update(state["stats"])
        self.stats.merge(theirs)
        if self.codes is not None:
            shard_codes = WindowCodes(self.codes.width)
            shard_codes.load_state_dict(state["codes"])
            self.codes.extend(shard_codes)

    def values(self, bucket: KeepLargest, features: np.ndarray, slots: np.ndarray, first: int = 0) -> np.ndarray:
        """[n, window] float32: the per-token values of slot (features[i], slots[i]) of `bucket`, a chunk of the
        state's buffers starting at feature `first`."""
        if self.codes is None:
            return bucket.values[features, slots].numpy().astype(np.float32)
        return self.codes.gather(features + first, bucket.window_ids[features, slots].numpy(), self.window)


def batch_generator(seed: int, batch_index: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed * 1_000_003 + batch_index)
    return generator


def active_keys(window_max: torch.Tensor, threshold: float) -> torch.Tensor:
    """Top-example keys: a window's max where the feature is active in it, else none. A sparse latent that
    fired in 3 windows has 3 top examples, not 3 and 47 windows where it is 0 (which explainers would be
    shown as its strongest examples and scorers would count as its positives)."""
    return window_max.masked_fill(window_max <= threshold, NO_KEY)


def select(state: CacheState, window_max: torch.Tensor, window_ids: torch.Tensor, generator: torch.Generator,
           threshold: float, acts: torch.Tensor | None = None) -> None:
    """The batch's candidates into the three selections, from its window maxima [F, B] (and per-token values
    [F, B, seq] for buffers that keep them): one step for both folds, so both draw the same random keys.
    Reservoir keys are drawn only where the feature is active (the non-zeros of a sparse SAE's [F, B])."""
    state.top.update(active_keys(window_max, threshold), window_max, window_ids, acts)
    active = (window_max > threshold).reshape(-1).nonzero().squeeze(1)  # flat [F * B] indices, in order
    reservoir_keys = torch.full(window_max.shape, NO_KEY, device=window_max.device)
    reservoir_keys.view(-1)[active] = torch.rand(len(active), generator=generator, device=window_max.device)
    state.reservoir.update(reservoir_keys, window_max, window_ids, acts)
    state.random.record(window_max, window_ids, acts)


def update_state(state: CacheState, acts: torch.Tensor, mask: torch.Tensor, window_ids: torch.Tensor,
                 generator: torch.Generator, threshold: float) -> None:
    """Fold one batch into the state. acts: [B, seq, F]; mask: [B, seq], True at real tokens."""
    acts = acts.float().masked_fill(~mask[:, :, None], 0.0)  # [B, seq, F]
    window_max = acts.masked_fill(~mask[:, :, None], NO_KEY).amax(dim=1).T.contiguous()  # [F, B]
    by_feature = acts.permute(2, 0, 1).contiguous()  # [F, B, seq]
    select(state, window_max, window_ids, generator, threshold, by_feature)
    state.stats.update(acts[mask], window_max)


def update_state_sparse(state: CacheState, codes: SparseCodes, mask: torch.Tensor, window_ids: torch.Tensor,
                        generator: torch.Generator, threshold: float) -> None:
    """`update_state` from a batch's non-zero codes (tokens numbered b * seq + position; codes >= 0): the
    same selections and statistics, every random draw the same, with no [features, batch, seq] tensor. The
    codes at real tokens are kept for the catalog's per-token values."""
    batch, length = mask.shape
    real = mask.reshape(-1)[codes.rows]
    rows, latents, values = codes.rows[real], codes.cols[real], codes.values[real].float()
    windows, positions = rows // length, rows % length
    n_features = codes.width
    window_max = torch.zeros(n_features * batch, device=values.device).scatter_reduce_(
        0, latents * batch + windows, values, "amax").view(n_features, batch)  # [F, B]: absent codes are 0s
    window_max[:, ~mask.any(dim=1)] = NO_KEY  # a window without real tokens, as update_state has it
    select(state, window_max, window_ids, generator, threshold)
    state.stats.update_sparse(latents, values, int(mask.sum()), window_max)
    assert state.codes is not None
    state.codes.append(window_ids[windows], positions, latents, values)


def fold_batch(config: CacheConfig, subject: SubjectModel, source: FeatureSource, windows: torch.Tensor,
               state: CacheState, batch_index: int, n_windows: int, first_window: int = 0) -> int:
    """Fold batch `batch_index` of the pass into the state; `windows` starts at window `first_window` (a
    shard's slice). Its random draws depend on the batch index alone, so any worker folds it the same way.
    Returns how many windows it held."""
    window_ids = torch.arange(batch_index * config.batch_size, min((batch_index + 1) * config.batch_size, n_windows))
    input_ids = windows[window_ids - first_window].to(subject.device)  # [B, seq]
    mask = content_mask(input_ids, subject.tokenizer)
    generator = batch_generator(config.seed, batch_index, subject.device)
    if state.codes is not None:
        update_state_sparse(state, source.read_sparse(subject, input_ids), mask, window_ids.to(subject.device),
                            generator, config.threshold)
    else:
        update_state(state, source.read(subject, input_ids), mask, window_ids.to(subject.device), generator,
                     config.threshold)
    return len(window_ids)
