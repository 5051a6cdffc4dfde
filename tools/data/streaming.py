"""One-pass selection and statistics over a stream of activations, in memory O(features x slots).

Everything here lives on the model's device and is updated batch by batch; nothing grows with the
corpus. Two selections share one mechanism (`KeepLargest`): the top-k windows (key = the window's
maximum activation) and a uniform reservoir of active windows (key = a random number drawn where the
window is active). Random negatives do not depend on the activations at all, so each feature's are
drawn before the pass (`RandomWindows`) and only filled in as their windows stream by. Quantile samples
are drawn from the reservoir at the end (`quantile_samples`).

Dense features (neurons, residual dimensions) carry each kept window's per-token values in its slot.
SAE latents do not (`length` 0): 270 slots x 64 tokens x 4 bytes is 69 KB a latent, 70 GB for a
1M-latent SAE; their slots keep window ids only, and the values come from the windows' sparse codes
(`tools/data/window_codes.py`) when the catalog is written. `FeatureStats.update_sparse` folds a batch
from its non-zero codes alone, giving exactly what `update` gives on the dense codes.
"""

from dataclasses import dataclass

import torch

NO_KEY = float("-inf")


def ranked(keys: torch.Tensor, window_ids: torch.Tensor, largest: bool) -> torch.Tensor:
    """Per row, the column order by key (largest or smallest first), equal keys by window: earlier windows
    rank higher. Window maxima tie often (a window's first token sees only BOS and itself), and a total
    order makes what is kept independent of the order windows arrive in, so a pass split over workers
    keeps what one pass keeps."""
    by_window = window_ids.argsort(dim=1, descending=not largest, stable=True)
    by_key = keys.gather(1, by_window).argsort(dim=1, descending=largest, stable=True)
    return by_window.gather(1, by_key)


class KeepLargest:
    """Per feature, the `size` items with the largest keys seen so far, with their per-token values.

    A batch only writes the slots it wins: evicted slots and entering items are paired feature by
    feature (both `nonzero` lists are ordered by feature and hold as many entries per feature), so
    the per-token buffer [features, size, length] is never copied whole.
    """

    def __init__(self, n_features: int, size: int, length: int, device: torch.device):
        self.size = size
        self.keys = torch.full((n_features, size), NO_KEY, device=device)  # [F, size]
        self.maxes = torch.zeros((n_features, size), device=device)  # [F, size]
        # int32: 2^31 windows is 137B tokens of 64; a 1M-latent state saves 1 GB over int64
        self.window_ids = torch.full((n_features, size), -1, dtype=torch.int32, device=device)  # [F, size]
        self.values = torch.zeros((n_features, size, length), device=device)  # [F, size, seq]; seq 0: none kept
        self._floor: torch.Tensor | None = None

    def floor(self) -> torch.Tensor:
        """[F] each feature's smallest kept key, the bar a candidate must pass. Kept between batches and
        refreshed only on the rows a batch merged: recomputing it is a pass over [F, size] (800 MB a batch
        for a 1M-latent reservoir)."""
        if self._floor is None:
            self._floor = self.keys.amin(dim=1)
        return self._floor

    def update(self, keys: torch.Tensor, maxes: torch.Tensor, window_ids: torch.Tensor,
               acts: torch.Tensor | None = None) -> None:
        """keys, maxes: [F, B]; window_ids: [B]; acts: [F, B, seq] (feature-major, so each copied row is contiguous),
        or None when the buffer keeps no per-token values.

        Only features with a candidate above their current smallest key are merged: after the first
        batches that is a small minority, which keeps the per-batch cost well below the forward pass.
        """
        rows = (keys > self.floor()[:, None]).any(dim=1).nonzero(as_tuple=True)[0]  # [R]
        if len(rows) == 0:
            return
        keys, maxes = keys[rows], maxes[rows]  # [R, B]
        combined = torch.cat([self.keys[rows], keys], dim=1)  # [R, size + B]
        combined_windows = torch.cat([self.window_ids[rows], window_ids.to(torch.int32).expand(len(rows), -1)], dim=1)
        # Dropping the B smallest is the same as keeping the `size` largest; equal keys drop the later window.
        losers = ranked(combined, combined_windows, largest=False)[:, : keys.shape[1]]  # [R, B]
        chosen = torch.ones_like(combined, dtype=torch.bool).scatter_(1, losers, False)
        row_slot, slot = (~chosen[:, : self.size]).nonzero(as_tuple=True)
        row_new, batch_index = chosen[:, self.size :].nonzero(as_tuple=True)
        feature_slot, feature_new = rows[row_slot], rows[row_new]
        self.keys[feature_slot, slot] = keys[row_new, batch_index]
        self.maxes[feature_slot, slot] = maxes[row_new, batch_index]
        self.window_ids[feature_slot, slot] = window_ids[batch_index].to(torch.int32)
        if acts is not None:
            self.values[feature_slot, slot] = acts[feature_new, batch_index].to(self.values.dtype)
        self.floor()[rows] = self.keys[rows].amin(dim=1)

    def merge(self, other: "KeepLargest") -> None:
        """Fold in another state's items over other windows (a Ray worker's shard): per feature, the `size`
        largest keys of both, equal keys ordered by window, exactly what one pass over all the windows keeps."""
        both = self._replaced({name: torch.cat([tensor, getattr(other, name).to(tensor.device)], dim=1)
                               for name, tensor in self.state_dict().items()})  # [F, 2 size, ...]
        for name, tensor in both.ordered().state_dict().items():
            setattr(self, name, tensor[:, : self.size].contiguous())
        self._floor = None

    def _replaced(self, tensors: dict[str, torch.Tensor]) -> "KeepLargest":
        out = type(self).__new__(type(self))
        out.size = self.size
        out._floor = None
        for name, tensor in tensors.items():
            setattr(out, name, tensor)
        return out

    def to(self, device: str | torch.device) -> "KeepLargest":
        return self._replaced({name: tensor.to(device) for name, tensor in self.state_dict().items()})

    def ordered(self) -> "KeepLargest":
        """The same items sorted by key, largest first, equal keys by window (empty slots, key -inf, last)."""
        order = ranked(self.keys, self.window_ids, largest=True)  # [F, size]
        return self._replaced({
            name: tensor.gather(1, order if tensor.dim() == 2 else order[:, :, None].expand_as(tensor))
            for name, tensor in self.state_dict().items()})

    def state_dict(self) -> dict[str, torch.Tensor]:
        return {"keys": self.keys, "maxes": self.maxes, "window_ids": self.window_ids, "values": self.values}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, tensor in state.items():
            getattr(self, name).copy_(tensor)
        self._floor = None


class RandomWindows(KeepLargest):
    """Per feature, `size` windows drawn uniformly without replacement from the pass's `n_windows` before it
    starts, each with a random key (its rank among the feature's negatives); a batch only records the
    maxima (and per-token values) of the planned windows it holds.

    The same sample as keeping the `size` largest of a random key per (feature, window), without drawing
    features x windows keys and merging them batch by batch: at 1M latents that merge was 1.2 s a batch.
    The plan lives in the state (`window_ids`, `keys`), so a resumed pass fills the same windows.
    """

    def __init__(self, n_features: int, size: int, length: int, device: torch.device, n_windows: int,
                 generator: torch.Generator):
        super().__init__(n_features, size, length, device)
        chosen = floyd_sample(n_features, min(size, n_windows), n_windows, generator)  # [F, m]
        self.window_ids[:, : chosen.shape[1]] = chosen.to(device=device, dtype=torch.int32)
        self.keys[:, : chosen.shape[1]] = torch.rand(chosen.shape, generator=generator).to(device)
        self._by_window: torch.Tensor | None = None
        self._sorted_windows = torch.zeros(0, dtype=torch.int32, device=device)

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        super().load_state_dict(state)
        self._by_window = None

    def record(self, window_max: torch.Tensor, window_ids: torch.Tensor, acts: torch.Tensor | None = None) -> None:
        """window_max: [F, B] of the batch's windows `window_ids` [B], consecutive as the pass streams them;
        acts: [F, B, seq] or None."""
        low, batch = int(window_ids[0]), len(window_ids)
        if int(window_ids[-1]) - low + 1 != batch:
            raise ValueError(f"a batch's windows must be consecutive, got {window_ids.tolist()[:4]}...")
        if self._by_window is None:  # the plan's slots ordered by window: a batch's are one range of it
            self._by_window = self.window_ids.view(-1).argsort(stable=True).to(torch.int32)
            self._sorted_windows = self.window_ids.view(-1)[self._by_window].contiguous()
        bounds = torch.tensor([low, low + batch], dtype=torch.int32, device=self._sorted_windows.device)
        start, end = torch.searchsorted(self._sorted_windows, bounds).tolist()
        flat = self._by_window[start:end].long()  # feature * size + slot
        feature, column = flat // self.size, self._sorted_windows[start:end].long() - low
        self.maxes.view(-1)[flat] = window_max.reshape(-1)[feature * batch + column]
        if acts is not None:
            self.values.view(-1, self.values.shape[-1])[flat] = acts[feature, column].to(self.values.dtype)

    def merge_filled(self, other: "RandomWindows", low: int, high: int) -> None:
        """Fold in another state that streamed windows [low, high) of the same plan: the slots of those
        windows take its maxima and values (each planned window is filled by exactly one shard)."""
        if not torch.equal(self.window_ids.cpu(), other.window_ids.cpu()):
            raise ValueError("the states hold different plans of random windows (another seed or corpus)")
        mine = (self.window_ids >= low) & (self.window_ids < high)
        self.maxes[mine] = other.maxes.to(self.maxes.device)[mine]
        if self.values.shape[-1]:
            self.values[mine] = other.values.to(self.values.device)[mine]


def floyd_sample(n_rows: int, size: int, n: int, generator: torch.Generator) -> torch.Tensor:
    """[n_rows, size] int64: per row, `size` distinct integers drawn uniformly from range(n) (Floyd's
    algorithm, all rows at once: `size` steps of [n_rows] work, whatever n is)."""
    chosen = torch.empty((n_rows, size), dtype=torch.long)
    for step, top in enumerate(range(n - size, n)):
        candidate = torch.randint(0, top + 1, (n_rows,), generator=generator)
        taken = (chosen[:, :step] == candidate[:, None]).any(dim=1)
        chosen[:, step] = torch.where(taken, top, candidate)
    return chosen


class FeatureStats:
    """Running max, mean, density and an exact histogram of active values, per feature.

    The histogram covers (0, range] in `bins` equal bins; `range` is a power of two per feature
    that doubles (merging neighbouring bins) whenever a larger value arrives, so no value is ever
    clipped and nothing about the activation scale has to be known in advance.
    """

    def __init__(self, n_features: int, bins: int, threshold: float, device: torch.device):
        if bins & (bins - 1):
            raise ValueError(f"histogram bins must be a power of two, got {bins}")
        self.bins = bins
        self.threshold = threshold
        self.n_tokens = torch.zeros((), dtype=torch.long, device=device)
        self.total = torch.zeros(n_features, dtype=torch.float64, device=device)
        self.max = torch.full((n_features,), NO_KEY, device=device)
        self.min = torch.full((n_features,), float("inf"), device=device)
        self.active = torch.zeros(n_features, dtype=torch.long, device=device)
        self.active_windows = torch.zeros(n_features, dtype=torch.long, device=device)
        self.n_windows = torch.zeros((), dtype=torch.long, device=device)
        self.hist_range = torch.full((n_features,), 2.0**-20, dtype=torch.float64, device=device)
        self.hist_counts = torch.zeros((n_features, bins), dtype=torch.long, device=device)

    def update(self, token_acts: torch.Tensor, window_maxes: torch.Tensor) -> None:
        """token_acts: [N, F], the real (non-special) tokens of a batch; window_maxes: [F, B]."""
        values = token_acts  # float32
        batch_max = values.amax(dim=0)
        self.n_tokens += values.shape[0]
        self.total += values.sum(dim=0, dtype=torch.float64)
        self.max = torch.maximum(self.max, batch_max)
        self.min = torch.minimum(self.min, values.amin(dim=0))
        active = values > self.threshold
        self.active += active.sum(dim=0)
        self.active_windows += self._active_windows(window_maxes)
        self.n_windows += window_maxes.shape[1]
        self._grow_range(batch_max.double())
        # Ranges are powers of two, exact in float32, so the bin index needs no float64 copy; int32
        # indices halve the memory traffic of the biggest temporaries.
        flat = (values * (self.bins / self.hist_range).float()).int().clamp_(0, self.bins - 1)  # [N, F]
        flat += torch.arange(0, flat.shape[1] * self.bins, self.bins, dtype=torch.int32, device=values.device)
        # Values outside the histogram's (0, range] or not active go to one extra bin that is dropped.
        in_histogram = active if self.threshold >= 0 else active & (values > 0)
        n_bins = self.hist_counts.numel()
        flat.masked_fill_(~in_histogram, n_bins)
        self.hist_counts += torch.bincount(flat.view(-1), minlength=n_bins + 1)[:n_bins].view_as(self.hist_counts)

    def update_sparse(self, latents: torch.Tensor, values: torch.Tensor, n_tokens: int,
                      window_maxes: torch.Tensor) -> None:
        """`update` from a batch's non-zero codes alone (latents, values: [nnz] at its `n_tokens` real tokens;
        codes >= 0, so every absent entry is a 0 below them): the same counts, sums and extremes, at a cost
        that follows the non-zeros, not tokens x features."""
        n_features = self.max.shape[0]
        present = torch.bincount(latents, minlength=n_features)  # [F] tokens where each latent is non-zero
        some_zero = present < n_tokens
        self.n_tokens += n_tokens
        self.total += torch.zeros(n_features, dtype=torch.float64, device=values.device).index_add_(
            0, latents, values.double())
        # Absent entries are 0s below every code, so a latent's max starts from 0 (as it does on the dense codes).
        batch_max = torch.zeros(n_features, device=values.device).scatter_reduce_(0, latents, values, "amax")
        smallest = torch.full((n_features,), float("inf"), device=values.device).scatter_reduce_(
            0, latents, values, "amin")
        self.max = torch.maximum(self.max, batch_max)
        self.min = torch.minimum(self.min, torch.where(some_zero, torch.zeros_like(smallest), smallest))
        above = values > self.threshold
        self.active += torch.bincount(latents[above], minlength=n_features)
        if self.threshold < 0:  # a 0 is active too
            self.active += n_tokens - present
        self.active_windows += self._active_windows(window_maxes)
        self.n_windows += window_maxes.shape[1]
        self._grow_range(batch_max.double())
        counted = above & (values > 0)
        latents, values = latents[counted], values[counted]
        scale = (self.bins / self.hist_range).float()[latents]
        flat = (values * scale).long().clamp_(0, self.bins - 1) + latents * self.bins
        # index_add, not a bincount of features x bins entries (64M at 1M latents) made for every batch
        self.hist_counts.view(-1).index_add_(0, flat, torch.ones_like(flat))

    def _active_windows(self, window_maxes: torch.Tensor) -> torch.Tensor:
        """[F] windows of the batch where each feature is active: counted from the non-zeros (a sum over a
        [F, B] bool tensor converts all of it to int64, 60 ms a batch at 1M latents)."""
        n_features, batch = window_maxes.shape
        active = (window_maxes > self.threshold).reshape(-1).nonzero().squeeze(1)
        return torch.bincount(active // batch, minlength=n_features)

    def _grow_range(self, needed: torch.Tensor) -> None:
        doublings = torch.ceil(torch.log2(needed / self.hist_range)).clamp_(min=0).nan_to_num_(0).long()  # [F]
        for factor_log2 in doublings.unique().tolist():
            if factor_log2 == 0:
                continue
            rows = (doublings == factor_log2).nonzero(as_tuple=True)[0]
            group = 2 ** min(factor_log2, self.bins.bit_length() - 1)
            merged = self.hist_counts[rows].view(len(rows), self.bins // group, group).sum(dim=2)
            self.hist_counts[rows] = torch.nn.functional.pad(merged, (0, self.bins - merged.shape[1]))
            self.hist_range[rows] *= 2.0**factor_log2

    def merge(self, other: "FeatureStats") -> None:
        """Fold in another state's statistics over other tokens: counts and sums add, extremes combine, and
        both histograms are regridded to the larger range of each feature (merging pairs of bins is exact on
        power-of-two ranges) before their counts add."""
        device = self.total.device
        for name in ("n_tokens", "total", "active", "active_windows", "n_windows"):
            setattr(self, name, getattr(self, name) + getattr(other, name).to(device))
        self.max = torch.maximum(self.max, other.max.to(device))
        self.min = torch.minimum(self.min, other.min.to(device))
        theirs = FeatureStats.__new__(FeatureStats)  # their histogram alone, regridded on a copy
        theirs.bins = self.bins
        theirs.hist_range = other.hist_range.to(device).clone()
        theirs.hist_counts = other.hist_counts.to(device).clone()
        widest = torch.maximum(self.hist_range, theirs.hist_range)
        self._grow_range(widest)
        theirs._grow_range(widest)
        self.hist_counts += theirs.hist_counts

    def state_dict(self) -> dict[str, torch.Tensor]:
        names = ("n_tokens", "total", "max", "min", "active", "active_windows", "n_windows", "hist_range",
                 "hist_counts")
        return {name: getattr(self, name) for name in names}

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        for name, tensor in state.items():
            getattr(self, name).copy_(tensor)


@dataclass(frozen=True)
class QuantileSamples:
    """Chosen reservoir slots for all features; example i is slot `slots[i]` of feature `features[i]`."""

    features: torch.Tensor  # [n]
    slots: torch.Tensor  # [n]
    quantiles: torch.Tensor  # [n]
    ranks: torch.Tensor  # [n], order within its feature, quantile by quantile
    edges: torch.Tensor
    """[F, n_quantiles + 1] boundaries over each feature's active windows' maxima (NaN when it never fired);
    quantile q spans [edges[q], edges[q + 1]]."""


def quantile_samples(maxes: torch.Tensor, keys: torch.Tensor, n_quantiles: int, per_quantile: int) -> QuantileSamples:
    """Stratify each feature's reservoir (a uniform sample of its active windows; maxes, keys: [F, M]) into
    equal-count quantiles of window maximum and keep up to `per_quantile` per quantile, the random keys choosing."""
    n_features, size = keys.shape
    valid = keys > NO_KEY  # [F, M]
    sample_max = maxes.double().masked_fill(~valid, float("nan"))
    levels = torch.linspace(0, 1, n_quantiles + 1, dtype=torch.float64, device=keys.device)
    edges = torch.nanquantile(sample_max, levels, dim=1).T.contiguous()  # [F, Q + 1]
    inner = edges[:, 1:-1].nan_to_num(0.0).contiguous()  # [F, Q - 1]
    bucket = torch.searchsorted(inner, sample_max.nan_to_num(0.0).contiguous(), right=True)  # [F, M]
    # Sort each row by (quantile ascending, key descending), invalid slots last.
    composite = bucket.double() * 2 + (1 - keys.double().clamp(min=0)).masked_fill(~valid, 0)
    composite.masked_fill_(~valid, float("inf"))
    order = composite.argsort(dim=1, stable=True)  # [F, M]
    sorted_bucket = bucket.gather(1, order).masked_fill(~valid.gather(1, order), n_quantiles)
    first_of_bucket = torch.searchsorted(sorted_bucket.contiguous(), sorted_bucket.contiguous(), right=False)
    keep = (torch.arange(size, device=keys.device) - first_of_bucket < per_quantile) & valid.gather(1, order)
    features, position = keep.nonzero(as_tuple=True)
    slots = order[features, position]
    counts = torch.bincount(features, minlength=n_features)
    starts = torch.cumsum(counts, 0) - counts
    ranks = torch.arange(len(features), device=keys.device) - starts[features]
    return QuantileSamples(features, slots, sorted_bucket[features, position], ranks, edges)
