"""The numbers behind every score: correlation, ranking quality, and a bootstrap interval around either.

Pure functions on arrays, each checkable with three numbers. Every metric also has a weighted form
that takes a matrix of item counts [resamples, n] and returns one value per row: a bootstrap resample
is a row of counts, so a thousand resamples are one matrix product instead of a thousand Python calls
(looping was 0.2 s of CPU per feature, which under the GIL capped labeling concurrency).
"""

import functools
from collections.abc import Callable

import numpy as np
from numpy.typing import ArrayLike


def moments(x: ArrayLike, y: ArrayLike) -> np.ndarray:
    """(count, sum x, sum y, sum xx, sum yy, sum xy) of one group of pairs: [6]."""
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    if xs.shape != ys.shape or xs.ndim != 1:
        raise ValueError(f"pearson needs two 1-d arrays of one length, got {xs.shape} and {ys.shape}")
    return np.array([len(xs), xs.sum(), ys.sum(), xs @ xs, ys @ ys, xs @ ys])


def pooled_pearson(group_moments: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Pearson correlation of the pairs of all groups pooled, each group counted `weights` times.

    group_moments [n_groups, 6], weights [resamples, n_groups] -> [resamples]; 0.0 where either side is
    constant (no linear signal to find). Centred sums are formed after pooling, in float64."""
    n, sx, sy, sxx, syy, sxy = (weights @ group_moments).T
    with np.errstate(divide="ignore", invalid="ignore"):
        covariance = sxy - sx * sy / n
        variance = (sxx - sx * sx / n) * (syy - sy * sy / n)
        r = covariance / np.sqrt(variance)
    return np.where(variance > 1e-12 * np.maximum(sxx * syy, 1e-300), np.clip(r, -1.0, 1.0), 0.0)


def pearson(x: ArrayLike, y: ArrayLike) -> float:
    return float(pooled_pearson(moments(x, y)[None], np.ones((1, 1)))[0])


def weighted_auroc(labels: ArrayLike, scores: ArrayLike, weights: np.ndarray) -> np.ndarray:
    """Probability that a random positive scores above a random negative (ties count half), per row of
    weights [resamples, n]; NaN where a row holds no positive or no negative."""
    is_positive = np.asarray(labels, dtype=bool)
    values = np.asarray(scores, dtype=np.float64)
    above, below = values[is_positive], values[~is_positive]
    beats = (above[:, None] > below[None, :]) + 0.5 * (above[:, None] == below[None, :])  # [positives, negatives]
    positive, negative = weights[:, is_positive], weights[:, ~is_positive]
    pairs = positive.sum(axis=1) * negative.sum(axis=1)
    # a matrix product and a row-wise dot: einsum's three-way loop was 6x slower
    wins = np.einsum("rn,rn->r", positive @ beats, negative)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(pairs > 0, wins / pairs, np.nan)


def auroc(labels: ArrayLike, scores: ArrayLike) -> float:
    is_positive = np.asarray(labels, dtype=bool)
    n_pos, n_neg = int(is_positive.sum()), int((~is_positive).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs positives and negatives, got {n_pos} and {n_neg}")
    return float(weighted_auroc(is_positive, scores, np.ones((1, len(is_positive))))[0])


def weighted_balanced_accuracy(labels: ArrayLike, predictions: ArrayLike, weights: np.ndarray) -> np.ndarray:
    """Mean of the true-positive and true-negative rates per row of weights; NaN where undefined."""
    truth = np.asarray(labels, dtype=bool)
    said = np.asarray(predictions, dtype=bool)
    kinds = np.stack([truth & said, truth, ~truth & ~said, ~truth], axis=1).astype(np.float64)  # [n, 4]
    hits, positives, rejections, negatives = (weights @ kinds).T  # one product for the four counts
    with np.errstate(divide="ignore", invalid="ignore"):
        return (hits / positives + rejections / negatives) / 2


def balanced_accuracy(labels: ArrayLike, predictions: ArrayLike) -> float:
    """A judge that always says yes scores 0.5."""
    truth = np.asarray(labels, dtype=bool)
    if truth.all() or not truth.any():
        raise ValueError("balanced accuracy needs positives and negatives")
    return float(weighted_balanced_accuracy(truth, predictions, np.ones((1, len(truth))))[0])


CACHED_ITEMS = 256
"""Resample counts of up to this many items are kept (at most 2 MB each at 1,000 resamples)."""


def resample_counts(n_items: int, resamples: int, seed: int) -> np.ndarray:
    """[resamples, n_items] item counts of `resamples` draws with replacement, read-only. They depend only on
    their arguments, and a labeling run asks for the same few sizes thousands of times (drawing them was
    ~1.5 ms a call, a tenth of a feature's client time against a fast endpoint), so small ones are made once."""
    return (_cached_counts if n_items <= CACHED_ITEMS else _drawn_counts)(n_items, resamples, seed)


def _drawn_counts(n_items: int, resamples: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    counts = rng.multinomial(n_items, np.full(n_items, 1 / n_items), size=resamples).astype(np.float64)
    counts.setflags(write=False)
    return counts


_cached_counts = functools.lru_cache(maxsize=128)(_drawn_counts)


def bootstrap_interval(statistic: Callable[[np.ndarray], np.ndarray], n_items: int, resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of a weighted statistic over resamples of `n_items` items with replacement.

    `statistic` takes item counts [resamples, n_items] and returns [resamples]; grouped data (tokens
    pooled by example) resample whole groups. Resamples where it is undefined (NaN) are skipped."""
    values = np.asarray(statistic(resample_counts(n_items, resamples, seed)), dtype=np.float64)
    values = values[~np.isnan(values)]
    if len(values) == 0:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2
    low, high = percentiles(values, [tail, 1 - tail])
    return float(low), float(high)


def percentiles(values: np.ndarray, shares: list[float]) -> np.ndarray:
    """np.percentile's default (linear between the two nearest ranks) without its generic machinery:
    that was ~0.1 ms a call, and a feature's scores take five intervals."""
    ordered = np.sort(values)
    positions = np.asarray(shares) * (len(ordered) - 1)
    below = np.floor(positions).astype(np.int64)
    above = np.minimum(below + 1, len(ordered) - 1)
    return ordered[below] + (ordered[above] - ordered[below]) * (positions - below)
