"""The numbers behind every score: correlation, ranking quality, and a bootstrap interval around either.

Pure functions on arrays so each can be checked with three numbers. AUROC is the Mann-Whitney U
statistic over scipy's tie-aware ranks: a few lines, and fast enough to bootstrap a thousand times.
"""

from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import rankdata


def pearson(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation; 0.0 when either side is constant (no linear signal to find)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"pearson needs two 1-d arrays of one length, got {x.shape} and {y.shape}")
    dx = x - x.mean()
    dy = y - y.mean()
    denominator = np.sqrt((dx * dx).sum() * (dy * dy).sum())
    return float((dx * dy).sum() / denominator) if denominator > 0 else 0.0


def auroc(labels: Sequence[bool], scores: Sequence[float]) -> float:
    """Probability that a random positive scores above a random negative (ties count half)."""
    labels = np.asarray(labels, dtype=bool)
    scores = np.asarray(scores, dtype=np.float64)
    n_pos, n_neg = int(labels.sum()), int((~labels).sum())
    if n_pos == 0 or n_neg == 0:
        raise ValueError(f"AUROC needs positives and negatives, got {n_pos} and {n_neg}")
    ranks = rankdata(scores)  # average ranks, so ties count half
    u = ranks[labels].sum() - n_pos * (n_pos + 1) / 2
    return float(u / (n_pos * n_neg))


def balanced_accuracy(labels: Sequence[bool], predictions: Sequence[bool]) -> float:
    """Mean of the true-positive and true-negative rates, so a judge that always says yes scores 0.5."""
    labels = np.asarray(labels, dtype=bool)
    predictions = np.asarray(predictions, dtype=bool)
    if labels.all() or not labels.any():
        raise ValueError("balanced accuracy needs positives and negatives")
    return float(((predictions & labels).sum() / labels.sum() + (~predictions & ~labels).sum() / (~labels).sum()) / 2)


def bootstrap_interval(statistic: Callable[[np.ndarray], float], n_items: int, resamples: int = 1000,
                       confidence: float = 0.95, seed: int = 0) -> tuple[float, float]:
    """Percentile interval of `statistic(indices)` over resamples of `n_items` items with replacement.

    The statistic receives the resampled item indices, so grouped data (tokens pooled by example)
    resamples whole examples. Resamples where the statistic is undefined (one class only) are skipped."""
    rng = np.random.default_rng(seed)
    values = []
    for _ in range(resamples):
        try:
            values.append(statistic(rng.integers(0, n_items, n_items)))
        except ValueError:
            continue
    if not values:
        return float("nan"), float("nan")
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(values, [tail, 100 - tail])
    return float(low), float(high)
