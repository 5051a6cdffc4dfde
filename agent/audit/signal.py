"""Is a concept in the model, and which features carry it? The measurements behind `interp audit`.

- Separation: a logistic-regression probe and a difference-of-means direction on each text's mean
  activation at the feature set's hook, scored by cross-validation (every text scored by a direction fitted
  without it), as AUROC with a 95% bootstrap interval over texts.
- Features: how well each feature's peak on a text separates the concept's texts (per-feature AUROC), and
  how closely its direction follows the difference of means.
- Two halves: candidates are chosen on one half of the texts (stratified) and confirmed on the other, where
  their AUROC gets a permutation p that no choosing has inflated; the family-wise bar (the best of all
  features under shuffled labels) is judged on all texts.
- Causal check: a readout probe at the model's last layer, fitted on the choosing half, measures the
  concept on the confirming half; ablating a feature on its positive texts should lower the readout,
  steering it on its negative texts should raise it. Effects are fractions of the readout's gap between
  positive and negative texts, with bootstrap intervals, and are measured only where that held-out gap is
  itself significant (a share of a gap that is noise is not an effect).
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evals.stats import auroc, bootstrap_interval, weighted_auroc
from tools.data.windows import content_mask
from tools.errors import InterpError
from tools.experiments.interventions import add, editing, encode_text, set_to
from tools.experiments.probing import MIN_PER_CLASS, pooled_activations
from tools.features import FeatureSource
from tools.model.hooks import n_layers, parse_hook
from tools.model.subject import SubjectModel

PERMUTATIONS = 50
CONFIRM_PERMUTATIONS = 2000
RESAMPLES = 1000


@dataclass(frozen=True)
class Separation:
    auroc: float
    ci_low: float
    ci_high: float
    n: int
    p_value: float
    """Share of label shuffles whose held-out AUROC reaches this one (add-one smoothed): the chance that a
    direction fitted to texts that differ in nothing separates them this well. The bootstrap interval
    alone misses the fitting's own optimism on few texts."""


def separation(x: np.ndarray, labels: np.ndarray, method: str, seed: int = 0) -> Separation:
    """Held-out AUROC of `method`'s direction, its bootstrap interval over texts, and a permutation p-value."""
    scores = held_out_scores(x, labels, method, seed)
    observed = auroc(labels, scores)
    low, high = bootstrap_interval(lambda counts: weighted_auroc(labels, scores, counts), len(labels), seed=seed)
    rng = np.random.default_rng(seed)
    null = [auroc(shuffled, held_out_scores(x, shuffled, method, seed))
            for shuffled in (rng.permutation(labels) for _ in range(PERMUTATIONS))]
    p_value = (1 + sum(value >= observed for value in null)) / (1 + PERMUTATIONS)
    return Separation(observed, low, high, len(labels), p_value)


def folds_for(labels: np.ndarray) -> int:
    n_pos, n_neg = int(labels.sum()), int((~labels.astype(bool)).sum())
    if min(n_pos, n_neg) < MIN_PER_CLASS:
        raise InterpError(f"a concept needs at least {MIN_PER_CLASS} positive and {MIN_PER_CLASS} negative texts, "
                          f"got {n_pos} and {n_neg}")
    return min(10, n_pos, n_neg)


def held_out_scores(x: np.ndarray, labels: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """Each text's score from a direction fitted on the other folds: 'probe' (logistic regression) or
    'mean-difference', both on inputs standardized by the training folds. Scores are signed distances
    from each fold's boundary (unit-norm direction; the mean difference is centred between the class
    means), so scores from different folds are on one scale before they are pooled into one AUROC. The
    probe uses liblinear: on a few dozen texts it fits 20x faster than lbfgs, and the permutation test
    refits it 50 times."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.preprocessing import StandardScaler

    scores = np.zeros(len(labels))
    for train, test in StratifiedKFold(folds_for(labels), shuffle=True, random_state=seed).split(x, labels):
        scaler = StandardScaler().fit(x[train])
        fit, held = scaler.transform(x[train]), scaler.transform(x[test])
        if method == "probe":
            model = LogisticRegression(solver="liblinear", max_iter=2000).fit(fit, labels[train])
            scores[test] = model.decision_function(held) / max(float(np.linalg.norm(model.coef_)), 1e-12)
        else:
            positive, negative = fit[labels[train] == 1].mean(0), fit[labels[train] == 0].mean(0)
            direction = positive - negative
            scores[test] = (held - (positive + negative) / 2) @ direction / max(float(np.linalg.norm(direction)),
                                                                                1e-12)
    return scores


def mean_difference(x: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return x[labels == 1].mean(0) - x[labels == 0].mean(0)


@torch.inference_mode()
def feature_peaks(subject: SubjectModel, source: FeatureSource, texts: list[str]) -> np.ndarray:
    """[len(texts), features]: each feature's largest activation over each text's real tokens."""
    rows = []
    for text in texts:
        input_ids = encode_text(subject, text)
        values = source.read(subject, input_ids)[0].float()  # [seq, features]
        mask = content_mask(input_ids, subject.tokenizer)[0]
        rows.append(values[mask].amax(dim=0).cpu().numpy())
    return np.stack(rows)


def rank_sum_aurocs(ranks: np.ndarray, labelings: np.ndarray) -> np.ndarray:
    """[labelings, features] AUROCs from the texts' ranks per feature ([texts, features], average ranks for
    ties) and 0/1 labelings of the texts ([labelings, texts]), all with the same number of positives."""
    n_pos = int(labelings[0].sum())
    n_neg = labelings.shape[1] - n_pos
    return (labelings @ ranks - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)


def feature_aurocs(peaks: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per feature: P(its peak on a positive text > on a negative one), ties half (rank-sum form)."""
    from scipy.stats import rankdata

    return rank_sum_aurocs(rankdata(peaks, axis=0), labels[None, :])[0]


def chance_max_aurocs(peaks: np.ndarray, labels: np.ndarray, permutations: int = 200, seed: int = 0) -> np.ndarray:
    """The highest per-feature activation AUROC under each of `permutations` shufflings of the labels: what
    the best of thousands of features reaches by chance on a few dozen texts (the family-wise null). Ranks
    do not depend on the labels, so every permutation is one matrix product over them."""
    from scipy.stats import rankdata

    rng = np.random.default_rng(seed)
    shuffled = np.stack([rng.permutation(labels) for _ in range(permutations)])  # [permutations, texts]
    return rank_sum_aurocs(rankdata(peaks, axis=0), shuffled).max(axis=1)


def split_halves(labels: np.ndarray, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Indices of the half candidates are chosen on and the half they are confirmed on: each class split
    at random, the choosing half taking the odd one."""
    rng = np.random.default_rng(seed)
    choose, confirm = [], []
    for value in (1, 0):
        members = rng.permutation(np.flatnonzero(labels == value))
        middle = (len(members) + 1) // 2
        choose += members[:middle].tolist()
        confirm += members[middle:].tolist()
    return np.array(sorted(choose)), np.array(sorted(confirm))


def held_out_aurocs(peaks: np.ndarray, labels: np.ndarray, permutations: int = CONFIRM_PERMUTATIONS,
                    seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Per column of `peaks` ([texts, features], texts not used to choose the features): the AUROC and its
    one-sided permutation p (add-one smoothed), every permutation one matrix product over the ranks."""
    from scipy.stats import rankdata

    ranks = rankdata(peaks, axis=0)
    observed = rank_sum_aurocs(ranks, labels[None, :])[0]
    rng = np.random.default_rng(seed)
    null = rank_sum_aurocs(ranks, np.stack([rng.permutation(labels) for _ in range(permutations)]))
    return observed, (1 + (null >= observed - 1e-12).sum(axis=0)) / (1 + permutations)


def smallest_p(labels: np.ndarray) -> float:
    """The smallest permutation p any AUROC can reach on these texts: one over the ways to choose which are
    positive. With 3 positive and 3 negative texts it is 1/20, so nothing can be confirmed at 0.05; the
    report says so instead of calling every candidate unconfirmed evidence."""
    from math import comb

    return max(1 / comb(len(labels), int(labels.sum())), 1 / (1 + CONFIRM_PERMUTATIONS))


def direction_alignment(source: FeatureSource, x: np.ndarray, direction: np.ndarray) -> np.ndarray:
    """Per feature: how closely it follows `direction` (in the hook's space): a standardized coordinate for
    a hook's own dimensions, the decoder's cosine for SAE latents."""
    if source.sae is None:
        spread = x.std(0)
        standardized = direction / np.where(spread > 0, spread, 1.0)
        return standardized / max(float(np.abs(standardized).max()), 1e-12)
    decoder = source.sae.W_dec.float().cpu().numpy()  # [d_sae, d_in]
    norms = np.linalg.norm(decoder, axis=1) * np.linalg.norm(direction)
    return decoder @ direction / np.where(norms > 0, norms, 1.0)


@dataclass
class Readout:
    """The concept as the model's last layer carries it: a probe on mean resid_post of the last layer."""

    source: FeatureSource
    model: Any
    """The fitted sklearn LogisticRegression (sklearn ships no types)."""
    positive: float
    negative: float
    """Mean probe score of the positive and of the negative texts, on the clean model."""

    @property
    def gap(self) -> float:
        return self.positive - self.negative

    @classmethod
    def fit(cls, subject: SubjectModel, positive: list[str], negative: list[str]) -> "Readout":
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        hook = parse_hook(f"resid_post.{n_layers(subject.model) - 1}", n_layers(subject.model))
        source = FeatureSource(hook, "residual", 0)
        x = pooled_activations(subject, source, positive + negative)
        labels = np.array([1] * len(positive) + [0] * len(negative))
        model = make_pipeline(StandardScaler(), LogisticRegression(solver="liblinear", max_iter=2000)).fit(x, labels)
        scores = model.decision_function(x)
        return cls(source, model, float(scores[labels == 1].mean()), float(scores[labels == 0].mean()))

    def scores(self, subject: SubjectModel, texts: list[str], edit=None) -> np.ndarray:
        """The readout of each text under `edit` (a context the forward runs in), if any."""
        return np.asarray(self.model.decision_function(pooled_activations(subject, self.source, texts, edit)))


@dataclass(frozen=True)
class Gap:
    """The readout's positive-negative gap on texts it was not fitted on."""

    value: float
    ci_low: float
    ci_high: float
    p_value: float
    """Share of label shuffles of the held-out texts whose gap reaches this one (add-one smoothed)."""

    @property
    def significant(self) -> bool:
        return self.ci_low > 0 and self.p_value < 0.05


def stratified_resamples(n_positive: int, n_negative: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap indices [RESAMPLES, n] for each class, resampled within the class."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, n_positive, (RESAMPLES, n_positive)), rng.integers(0, n_negative, (RESAMPLES, n_negative))


def readout_gap(positive: np.ndarray, negative: np.ndarray, seed: int = 0) -> Gap:
    """The gap between per-text readouts of held-out positive and negative texts, its stratified bootstrap
    interval and a permutation p."""
    value = float(positive.mean() - negative.mean())
    pos_index, neg_index = stratified_resamples(len(positive), len(negative), seed)
    resampled = positive[pos_index].mean(1) - negative[neg_index].mean(1)
    low, high = np.percentile(resampled, [2.5, 97.5])
    pooled = np.concatenate([positive, negative])
    rng = np.random.default_rng(seed)
    null = np.array([(lambda order: pooled[order[:len(positive)]].mean() - pooled[order[len(positive):]].mean())(
        rng.permutation(len(pooled))) for _ in range(CONFIRM_PERMUTATIONS)])
    return Gap(value, float(low), float(high), float((1 + (null >= value - 1e-12).sum()) / (1 + len(null))))


@dataclass(frozen=True)
class CausalEffect:
    ablation: float
    """Drop of the readout on positive texts when the feature is zeroed, as a fraction of the gap."""
    steering: float
    """Rise of the readout on negative texts when the feature is added, as a fraction of the gap."""
    strength: float
    ablation_ci: tuple[float, float] = (float("nan"), float("nan"))
    steering_ci: tuple[float, float] = (float("nan"), float("nan"))
    """95% stratified bootstrap intervals over the texts (the gap resampled with them)."""


def causal_effect(subject: SubjectModel, source: FeatureSource, feature: int, readout: Readout,
                  positive: list[str], negative: list[str], strength: float, seed: int = 0) -> CausalEffect:
    """Ablation on `positive` and steering on `negative` (texts the readout was not fitted on), as shares of
    the readout's gap on those same texts."""
    clean_pos, clean_neg = readout.scores(subject, positive), readout.scores(subject, negative)
    drop = clean_pos - readout.scores(subject, positive, lambda: editing(subject, source, feature, set_to(0.0)))
    rise = readout.scores(subject, negative, lambda: editing(subject, source, feature, add(strength))) - clean_neg
    pos_index, neg_index = stratified_resamples(len(positive), len(negative), seed)
    gaps = clean_pos[pos_index].mean(1) - clean_neg[neg_index].mean(1)
    usable = gaps > 0

    def interval(change: np.ndarray, index: np.ndarray) -> tuple[float, float]:
        shares = change[index].mean(1)[usable] / gaps[usable]
        if len(shares) == 0:
            return float("nan"), float("nan")
        low, high = np.percentile(shares, [2.5, 97.5])
        return float(low), float(high)

    gap = float(clean_pos.mean() - clean_neg.mean())
    return CausalEffect(float(drop.mean()) / gap, float(rise.mean()) / gap, strength, interval(drop, pos_index),
                        interval(rise, neg_index))
