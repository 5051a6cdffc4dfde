"""`interp eval control SET`: the set's scores beside those of a seeded random copy of its model.

The control is built from the set's own recipe: the same model spec with `random:SEED:` in front (a copy
with the same architecture and config, weights from the architecture's initializer; tools/model/randomized.py),
cached on the same corpus, tokens, windows and hook with the same cache settings. For an SAE or transcoder
set, the same architecture is first trained on the random model's activations (control_coders.py).
A seeded sample of features live in both sets is then labeled in each by the same explainer and scorers,
through the ordinary resumable label pipeline, and every (scorer, metric) is compared (evals/control.py).
The rows go into the `evals` table under a run whose config names both sets, which is how the feature-set
page and the label tables find a set's control.
"""

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.labeling.config import LabelConfig
from agent.labeling.pipeline import run_label
from evals.control import ControlComparison, compare_to_control
from tools.catalog import Catalog
from tools.configs import CacheConfig
from tools.defaults import RANDOM_MODEL_PREFIX
from tools.errors import InterpError

MIN_SAMPLE = 2
MODEL_KINDS = ("neuron", "residual", "attention")
"""Kinds whose features are the model's own units: the control caches them in the random copy directly."""


@dataclass
class ControlEval:
    run_id: str
    set_id: str
    control_set_id: str
    features: list[int]
    comparisons: list[ControlComparison]
    explainer: str


def control_cache_config(feature_set: dict, run_config: dict, model_seed: int, catalog_path: Path,
                         progress: bool) -> CacheConfig:
    """The trained set's cache config with the random copy in place of the model (and, for an SAE or
    transcoder set, a coder of the same architecture trained on the random copy in place of the coder)."""
    fields = {f.name for f in dataclasses.fields(CacheConfig)}
    config = CacheConfig(**{name: value for name, value in run_config.items() if name in fields})
    if config.model.startswith(RANDOM_MODEL_PREFIX):
        raise InterpError(f"feature set {feature_set['feature_set_id']} is itself a random-model control")
    from tools.model.randomized import random_spec

    control = dataclasses.replace(config, model=random_spec(config.model, model_seed), hook=feature_set["hook"])
    if feature_set["kind"] in MODEL_KINDS:
        return dataclasses.replace(control, sae="")
    if feature_set["kind"] in ("sae", "transcoder"):
        from agent.evaluate.control_coders import trained_control_coder

        return dataclasses.replace(control, sae=str(trained_control_coder(feature_set, config, control.model,
                                                                         catalog_path, progress)))
    raise InterpError(f"feature set {feature_set['feature_set_id']} holds {feature_set['kind']} features, which have "
                      "no model to randomize; a control needs neurons, residual dimensions, attention outputs, SAE "
                      "or transcoder latents")


def matched_sample(trained: list[int], control: list[int], size: int, seed: int) -> list[int]:
    """`size` features live in both sets, drawn with `seed` (the same indices on both sides)."""
    both = sorted(set(trained) & set(control))
    if len(both) < MIN_SAMPLE:
        raise InterpError(f"only {len(both)} features fired in both the set and its control; cache more tokens")
    chosen = np.random.default_rng(seed).choice(len(both), min(size, len(both)), replace=False)
    return sorted(both[i] for i in chosen)


def run_control(config: LabelConfig, set_ref: str, catalog_path: Path, sample: int = 64, model_seed: int = 0,
                seed: int = 0, progress: bool = True, llm_factory=None) -> ControlEval:
    """Cache the control (once), label the matched sample on both sides (resumably), compare and record."""
    config.validate()
    if sample < MIN_SAMPLE:
        raise InterpError(f"--sample must be at least {MIN_SAMPLE} features, got {sample}")
    catalog_path = Path(catalog_path)
    with Catalog(catalog_path, read_only=True) as catalog:
        feature_set = catalog.feature_set(set_ref)
        set_id = feature_set["feature_set_id"]
        run = catalog.run_row(feature_set["run_id"])
    run_config = json.loads(run["config"]) if run else {}  # DuckDB gives a JSON column as its text
    if not run_config or "tokens" not in run_config:
        raise InterpError(f"feature set {set_id} has no cache run to repeat on a random model (was it imported?)")
    cache_config = control_cache_config(feature_set, run_config, model_seed, catalog_path, progress)
    from tools.passes.cache import run_cache

    control_id = run_cache(cache_config, catalog_path, progress=progress).feature_set_id
    with Catalog(catalog_path, read_only=True) as catalog:
        features = matched_sample(catalog.live_features(set_id), catalog.live_features(control_id), sample, seed)
    listed = dataclasses.replace(config, features=",".join(map(str, features)), limit=0)
    results = [run_label(listed, ref, catalog_path, progress, llm_factory) for ref in (set_id, control_id)]
    labeler = results[0].labeler
    explainer = (labeler.explainer.name, labeler.explainer.llm_name, labeler.explainer.prompt_hash)
    scorers = [(s.name, s.llm_name, s.prompt_hash) for s in labeler.scorers]
    with Catalog(catalog_path, read_only=True) as catalog:
        trained, control = (catalog.score_values(ref, explainer, scorers, features) for ref in (set_id, control_id))
    comparisons = [compare_to_control(scorer, metric, np.asarray(list(values.values())),
                                      np.asarray(list(control[(scorer, metric)].values())), seed=seed)
                   for (scorer, metric), values in sorted(trained.items())
                   if len(values) >= MIN_SAMPLE and len(control.get((scorer, metric), {})) >= MIN_SAMPLE]
    if not comparisons:
        raise InterpError(f"no scorer scored {MIN_SAMPLE}+ features on both sides; pass --scorers (e.g. embedding)")
    recorded = config.recorded() | {"eval": "control", "feature_set": set_id, "control_set": control_id,
                                    "model_seed": model_seed, "sample": sample, "seed": seed, "features": features}
    with Catalog.run(catalog_path, "eval", recorded) as run_id:
        with Catalog(catalog_path) as catalog:
            catalog.record_eval(run_id, "control", [control_row(c, set_id, control_id, explainer[0])
                                                    for c in comparisons])
    return ControlEval(run_id, set_id, control_id, features, comparisons, labeler.explainer.name)


def control_row(comparison: ControlComparison, set_id: str, control_id: str, explainer: str) -> dict:
    """One `evals` row: the difference of means and its interval, the rest in the details."""
    return {"subject": f"scorer {comparison.scorer}", "metric": f"{comparison.metric}: trained - control",
            "value": comparison.difference, "n": comparison.trained.n, "ci_low": comparison.ci_low,
            "ci_high": comparison.ci_high,
            "details": json.dumps(comparison.details() | {"scorer": comparison.scorer, "metric": comparison.metric,
                                                         "feature_set": set_id, "control_set": control_id,
                                                         "explainer": explainer})}
