"""What evals read from the catalog and write back: one configuration's labels of a feature set, and
rows of an eval table (a value, its n and 95% bootstrap interval over features)."""

from dataclasses import dataclass

import numpy as np

from evals.stats import bootstrap_interval
from tools.catalog import Catalog

PRIMARY_METRIC = {"simulation": "pearson", "detection": "auroc", "fuzzing": "auroc", "embedding": "auroc",
                  "intervention": "auroc", "intruder": "accuracy"}
"""The one metric per scorer that evals compare."""


@dataclass(frozen=True)
class EvalRow:
    subject: str
    """'explainer NAME (LLM)' or 'scorer NAME'."""
    metric: str
    value: float
    n: int
    ci_low: float
    ci_high: float


def mean_with_interval(per_feature: np.ndarray, weights: np.ndarray | None = None,
                       seed: int = 0) -> tuple[float, float, float]:
    """Weighted mean over features (weights: pairs per feature) and its bootstrap interval."""
    weights = np.ones_like(per_feature) if weights is None else weights
    if weights.sum() == 0:
        return float("nan"), float("nan"), float("nan")
    totals = per_feature * weights

    def statistic(counts: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return (counts @ totals) / (counts @ weights)

    low, high = bootstrap_interval(statistic, len(per_feature), seed=seed)
    return float(totals.sum() / weights.sum()), low, high


@dataclass
class Labels:
    """One explainer's explanations of a feature set: text, embedding and primary scores per feature."""

    texts: dict[int, str]
    embeddings: dict[int, np.ndarray]
    scores: dict[int, dict[str, float]]
    tokens: dict[int, int]
    """LLM tokens (prompt + completion) the explainer spent on the feature."""


def read_labels(catalog: Catalog, set_id: str, name: str, llm: str, prompt_hash: str) -> Labels:
    rows = catalog.con.execute(
        "SELECT e.feature, e.text, e.embedding, e.prompt_tokens + e.completion_tokens, s.scorer, s.metric, s.value "
        "FROM explanations e "
        "LEFT JOIN scores s ON s.explanation_id = e.explanation_id AND s.status = 'ok' "
        "WHERE e.feature_set_id = ? AND e.explainer = ? AND e.llm = ? AND e.prompt_hash = ? AND e.status = 'ok' "
        "ORDER BY e.created_at", [set_id, name, llm, prompt_hash]).fetchall()
    labels = Labels({}, {}, {}, {})
    for feature, text, embedding, tokens, scorer, metric, value in rows:
        labels.texts[feature] = text
        labels.tokens[feature] = tokens
        labels.embeddings[feature] = np.asarray(embedding, dtype=np.float64)
        if scorer is not None and PRIMARY_METRIC.get(scorer) == metric:
            labels.scores.setdefault(feature, {})[scorer] = value
    return labels


def row(subject: str, metric: str, per_feature: np.ndarray, weights: np.ndarray | None, seed: int) -> EvalRow:
    value, low, high = mean_with_interval(per_feature, weights, seed)
    n = int(weights.sum()) if weights is not None else len(per_feature)
    return EvalRow(subject, metric, value, n, low, high)
