"""Trained features against a random-model control: does a score say more than any network would earn?

Heap et al. (2025, arXiv 2501.17727) found that SAEs on randomly initialized transformers get auto-interp
scores close to those on trained ones, so a score printed alone is weak evidence. For each scorer and
metric this compares the scores of a sample of the trained model's features with those of the same
explainer and scorers on the same number of features of a seeded random copy of the model: both
distributions, the difference of their means with a 95% bootstrap interval (trained and control features
resampled independently), and the share of trained features scoring above the control's 95th percentile,
with its interval. Every metric here is higher-is-better (Pearson r, AUROC, accuracy, P(intruder))."""

import json
from dataclasses import asdict, dataclass

import numpy as np

from evals.stats import percentiles
from tools.catalog import Catalog

RESAMPLES = 2000


@dataclass(frozen=True)
class Distribution:
    n: int
    mean: float
    q25: float
    median: float
    q75: float
    p95: float
    mean_low: float
    mean_high: float
    """95% bootstrap interval of the mean."""

    @classmethod
    def of(cls, values: np.ndarray, draws: np.ndarray) -> "Distribution":
        """`draws`: [resamples, n] resamples of `values`."""
        q25, median, q75, p95 = percentiles(values, [0.25, 0.5, 0.75, 0.95])
        low, high = percentiles(draws.mean(axis=1), [0.025, 0.975])
        return cls(len(values), float(values.mean()), float(q25), float(median), float(q75), float(p95), float(low),
                   float(high))


@dataclass(frozen=True)
class ControlComparison:
    scorer: str
    metric: str
    trained: Distribution
    control: Distribution
    difference: float
    """Mean of the trained features' scores minus the control's."""
    ci_low: float
    ci_high: float
    above: float
    """Share of trained features scoring above the control's 95th percentile (0.05 if training changed
    nothing)."""
    above_low: float
    above_high: float

    @property
    def within_control(self) -> bool:
        """The difference's interval includes 0: this score does not tell the trained model from a random one."""
        return self.ci_low <= 0 <= self.ci_high

    def details(self) -> dict:
        return {"trained": asdict(self.trained), "control": asdict(self.control), "above_control_p95": self.above,
                "above_ci": [self.above_low, self.above_high], "within_control": self.within_control}


def compare_to_control(scorer: str, metric: str, trained: np.ndarray, control: np.ndarray,
                       resamples: int = RESAMPLES, seed: int = 0) -> ControlComparison:
    trained, control = np.asarray(trained, dtype=np.float64), np.asarray(control, dtype=np.float64)
    if len(trained) < 2 or len(control) < 2:
        raise ValueError(f"{scorer} {metric}: a comparison needs 2+ scores on each side, got {len(trained)} trained "
                         f"and {len(control)} control")
    rng = np.random.default_rng(seed)
    trained_draws = trained[rng.integers(0, len(trained), (resamples, len(trained)))]
    control_draws = control[rng.integers(0, len(control), (resamples, len(control)))]
    differences = trained_draws.mean(axis=1) - control_draws.mean(axis=1)
    control_p95 = np.quantile(control_draws, 0.95, axis=1, keepdims=True)
    shares = (trained_draws > control_p95).mean(axis=1)
    low, high = percentiles(differences, [0.025, 0.975])
    above_low, above_high = percentiles(shares, [0.025, 0.975])
    control_summary = Distribution.of(control, control_draws)
    return ControlComparison(scorer, metric, Distribution.of(trained, trained_draws), control_summary,
                             float(trained.mean() - control.mean()), float(low), float(high),
                             float((trained > control_summary.p95).mean()), float(above_low), float(above_high))


def newest_control(catalog: Catalog, set_id: str) -> list[dict]:
    """The newest random-model control of the set (`interp eval control`): one row per scorer and metric, with
    both distributions, the difference and its interval, and whether that interval includes 0. None in a
    catalog from before evals (schema 2, opened read-only)."""
    if not catalog.has_table("evals"):
        return []
    rows = catalog.all_rows(
        "WITH newest AS (SELECT run_id FROM evals WHERE eval = 'control' AND details->>'feature_set' = ? "
        "ORDER BY created_at DESC LIMIT 1) SELECT e.run_id, e.value, e.ci_low, e.ci_high, e.details, e.created_at "
        "FROM evals e JOIN newest USING (run_id) ORDER BY e.subject, e.metric", [set_id])
    return [json.loads(row["details"]) | {key: row[key] for key in ("run_id", "value", "ci_low", "ci_high",
                                                                     "created_at")} for row in rows]


def control_means(control: list[dict]) -> dict[str, float]:
    """{'scorer metric': the control's mean} of `newest_control`'s rows: what a score's interval is held to."""
    return {f"{c['scorer']} {c['metric']}": c["control"]["mean"] for c in control}
