"""Is a concept in the model, and which features carry it? The measurements behind `interp audit`.

- Separation: a logistic-regression probe and a difference-of-means direction on each text's mean
  activation at the feature set's hook, scored by cross-validation (every text scored by a direction fitted
  without it), as AUROC with a 95% bootstrap interval over texts.
- Features: how well each feature's peak on a text separates the concept's texts (per-feature AUROC), and
  how closely its direction follows the difference of means.
- Causal check: a readout probe at the model's last layer measures the concept; ablating a feature on the
  positive texts should lower the readout, steering it on the negative texts should raise it. Effects are
  fractions of the readout's gap between positive and negative texts.
"""

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from evals.stats import auroc, bootstrap_interval, weighted_auroc
from tools.data.windows import content_mask
from tools.errors import InterpError
from tools.experiments.interventions import add, edited_activation, encode_text, set_to
from tools.experiments.probing import MIN_PER_CLASS, pooled_activations
from tools.features import FeatureSource
from tools.model.hooks import n_layers, parse_hook
from tools.model.subject import SubjectModel

PERMUTATIONS = 50


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

    def score(self, subject: SubjectModel, texts: list[str], edit) -> float:
        """Mean readout over texts with `edit` (hook, replace) applied during the forward."""
        return float(self.model.decision_function(pooled_activations(subject, self.source, texts, edit)).mean())


@dataclass(frozen=True)
class CausalEffect:
    ablation: float
    """Drop of the readout on positive texts when the feature is zeroed, as a fraction of the gap."""
    steering: float
    """Rise of the readout on negative texts when the feature is added, as a fraction of the gap."""
    strength: float


def causal_effect(subject: SubjectModel, source: FeatureSource, feature: int, readout: Readout,
                  positive: list[str], negative: list[str], strength: float) -> CausalEffect:
    gap = readout.gap if abs(readout.gap) > 1e-9 else float("nan")
    ablated = readout.score(subject, positive, (source.hook, edited_activation(source, feature, set_to(0.0))))
    steered = readout.score(subject, negative, (source.hook, edited_activation(source, feature, add(strength))))
    return CausalEffect((readout.positive - ablated) / gap, (steered - readout.negative) / gap, strength)
