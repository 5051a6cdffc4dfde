"""`interp eval planted`: explainers and scorers judged on planted features, where the answer is known.

The planted set is cached like any feature set (`interp cache --hook planted`). Each explainer labels it
with the ordinary label pipeline; each feature's true and false descriptions are "explained" and scored
by the same pipeline (`DescriptionExplainer`), so every number below is computed from catalog rows:

- per explainer: embedding similarity of its explanation to the true description; how often that
  explanation is nearer the truth than every false description; per scorer, how often it outscores a
  false description (pairs of feature x false description).
- per scorer (a sanity check in the spirit of NeuronEval): how often the true description outscores
  each false one. A scorer that cannot tell them apart cannot tell explainers apart either.

Intervals are 95% bootstrap intervals over features (a feature's pairs resampled together).
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.labeling.config import LabelConfig
from agent.labeling.explainers import Explanation
from agent.labeling.pipeline import run_label
from evals.planted import PLANTED, planted_sha256
from evals.records import FeatureRecord
from evals.tables import PRIMARY_METRIC, EvalRow, Labels, read_labels, row
from tools.catalog import Catalog
from tools.errors import FeatureFailure, InterpError

TRUTH = "planted-truth"


class DescriptionExplainer:
    """'Explains' a planted feature with one of its own descriptions (role 0 the truth, k the k-th false
    one), so descriptions are scored, resumably, by exactly the pipeline that scores explainers."""

    llm_name = ""

    def __init__(self, role: int):
        self.role = role
        self.name = TRUTH if role == 0 else f"planted-false-{role}"
        self.prompt_hash = planted_sha256()[:16]

    def explain(self, record: FeatureRecord) -> Explanation:
        feature = PLANTED[record.feature]
        texts = (feature.description, *feature.false_descriptions)
        if self.role >= len(texts):
            raise FeatureFailure(f"planted feature '{feature.name}' has no false description {self.role}")
        return Explanation(texts[self.role])

    def key(self) -> tuple[str, str, str]:
        return self.name, self.llm_name, self.prompt_hash


def checked_planted_set(catalog: Catalog, ref: str) -> dict:
    feature_set = catalog.feature_set(ref)
    if feature_set["kind"] != "planted":
        raise InterpError(f"feature set {feature_set['feature_set_id']} holds {feature_set['kind']} features, not "
                          "planted ones; run `interp cache --hook planted` and pass its id (or 'planted')")
    if feature_set["source_sha256"] != planted_sha256():
        raise InterpError(f"feature set {feature_set['feature_set_id']} was cached with other planted rules; "
                          "run `interp cache --hook planted` again")
    return feature_set


def beats(first: Labels, others: list[Labels], scorer: str, features: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Per feature: wins of `first` over each of `others` under `scorer` (ties count half), and pairs."""
    wins, pairs = np.zeros(len(features)), np.zeros(len(features))
    for index, feature in enumerate(features):
        mine = first.scores.get(feature, {}).get(scorer)
        for other in others:
            theirs = other.scores.get(feature, {}).get(scorer)
            if mine is None or theirs is None or np.isnan(mine) or np.isnan(theirs):
                continue
            pairs[index] += 1
            wins[index] += 1.0 if mine > theirs else 0.5 if mine == theirs else 0.0
    return wins, pairs


def win_rate(subject: str, metric: str, wins: np.ndarray, pairs: np.ndarray, seed: int) -> EvalRow:
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = np.where(pairs > 0, wins / np.maximum(pairs, 1), 0.0)
    return row(subject, metric, rate, pairs, seed)


def explainer_rows(subject: str, labels: Labels, truth: Labels, false: list[Labels], scorers: list[str],
                   features: list[int], seed: int) -> list[EvalRow]:
    covered = [f for f in features if f in labels.embeddings and f in truth.embeddings]
    similarity = np.array([labels.embeddings[f] @ truth.embeddings[f] for f in covered])
    nearest = np.array([float(all(labels.embeddings[f] @ truth.embeddings[f] >
                                  labels.embeddings[f] @ other.embeddings[f]
                                  for other in false if f in other.embeddings)) for f in covered])
    rows = [row(subject, "similarity to the truth", similarity, None, seed),
            row(subject, "nearer the truth than every false description", nearest, None, seed)]
    for scorer in scorers:
        wins, pairs = beats(labels, false, scorer, features)
        rows.append(win_rate(subject, f"{scorer} beats false descriptions", wins, pairs, seed))
    return rows


def planted_report(catalog: Catalog, set_id: str, explainers: list[tuple[str, str, str]], scorers: list[str],
                   seed: int = 0) -> list[EvalRow]:
    features = list(range(len(PLANTED)))
    truth = read_labels(catalog, set_id, *DescriptionExplainer(0).key())
    false = [read_labels(catalog, set_id, *DescriptionExplainer(k).key()) for k in (1, 2, 3)]
    rows = []
    for scorer in scorers:
        wins, pairs = beats(truth, false, scorer, features)
        rows.append(win_rate(f"scorer {scorer}", "truth beats false descriptions", wins, pairs, seed))
        truth_scores = np.array([truth.scores.get(f, {}).get(scorer, np.nan) for f in features])
        kept = truth_scores[~np.isnan(truth_scores)]
        rows.append(row(f"scorer {scorer}", f"{PRIMARY_METRIC[scorer]} of the truth", kept, None, seed))
    for name, llm, prompt_hash in explainers:
        subject = f"explainer {name}" + (f" ({llm})" if llm else "")
        labels = read_labels(catalog, set_id, name, llm, prompt_hash)
        rows += explainer_rows(subject, labels, truth, false, scorers, features, seed)
    return rows


@dataclass
class PlantedEval:
    run_id: str
    set_id: str
    rows: list[EvalRow]


def run_planted_eval(config: LabelConfig, explainers: list[str], catalog_path: Path, set_ref: str = "planted",
                     seed: int = 0, progress: bool = True, llm_factory=None) -> PlantedEval:
    """Label the planted set with each explainer and with the descriptions, score all with the same
    scorers, and record the report. Everything is resumable: a rerun only does what is missing."""
    config.validate()
    catalog_path = Path(catalog_path)
    with Catalog(catalog_path, read_only=True) as catalog:
        set_id = checked_planted_set(catalog, set_ref)["feature_set_id"]
    for name in explainers:
        dataclasses.replace(config, explainer=name).validate()
    labeled = []
    for role in range(4):
        run_label(config, set_id, catalog_path, progress, llm_factory, explainer=DescriptionExplainer(role))
    for name in explainers:
        result = run_label(dataclasses.replace(config, explainer=name), set_id, catalog_path, progress, llm_factory)
        explainer = result.labeler.explainer
        labeled.append((explainer.name, explainer.llm_name, explainer.prompt_hash))
    with Catalog(catalog_path, read_only=True) as catalog:
        rows = planted_report(catalog, set_id, labeled, config.scorer_names(), seed)
    with Catalog.run(catalog_path, "eval", config.recorded() | {
            "eval": "planted", "feature_set": set_id, "explainers": explainers, "seed": seed}) as run_id:
        with Catalog(catalog_path) as catalog:
            catalog.record_eval(run_id, "planted", [dataclasses.asdict(r) | {"details": json.dumps({})}
                                                    for r in rows])
    return PlantedEval(run_id, set_id, rows)
