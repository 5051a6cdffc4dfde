"""`interp eval compare`: two labeling configurations on the same features, as a paired table.

A configuration is whatever keyed an explainer's rows in the catalog: its name (oneshot, evidence,
output, both, token-stats, investigate, investigate-agent), its LLM and its prompt hash; `NAME@TEXT` picks the one
whose LLM contains TEXT when several share a name. Both must already have labeled the feature set
(`interp label`, `interp investigate`, or `interp eval planted` for the planted set); only the features
both labeled and scored are compared, pair by pair.
"""

import dataclasses
import json
import math
from pathlib import Path

import numpy as np

from evals.control import newest_control
from evals.tables import PRIMARY_METRIC, EvalRow, Labels, read_labels, row
from tools.catalog import Catalog
from tools.errors import InterpError


def configurations(catalog: Catalog, set_id: str) -> list[tuple[str, str, str, int]]:
    """(explainer, LLM, prompt hash, features labeled) of every configuration that labeled the set."""
    return [tuple(r) for r in catalog.con.execute(
        "SELECT explainer, llm, prompt_hash, count(DISTINCT feature) FROM explanations "
        "WHERE feature_set_id = ? AND status = 'ok' GROUP BY ALL ORDER BY ALL", [set_id]).fetchall()]


def resolve(catalog: Catalog, set_id: str, spec: str) -> tuple[str, str, str]:
    name, _, llm_part = spec.partition("@")
    known = configurations(catalog, set_id)
    found = [c for c in known if c[0] == name and llm_part in c[1]]
    listing = "; ".join(f"{n}@{llm or '-'} ({count} features)" for n, llm, _, count in known) or "none yet"
    if not found:
        raise InterpError(f"no configuration '{spec}' has labeled {set_id}; labeled by: {listing}")
    if len({(n, llm, h) for n, llm, h, _ in found}) > 1:
        raise InterpError(f"'{spec}' matches {len(found)} configurations of {set_id}; add @ and part of the LLM "
                          f"name to pick one: {listing}")
    return found[0][:3]


def label_of(config: tuple[str, str, str]) -> str:
    name, llm, _ = config
    return f"{name} ({llm})" if llm else name


def paired_rows(first: Labels, second: Labels, names: tuple[str, str], scorers: list[str],
                seed: int) -> list[EvalRow]:
    rows = []
    for scorer in scorers:
        features = sorted(f for f in set(first.scores) & set(second.scores)
                          if scorer in first.scores[f] and scorer in second.scores[f])
        if not features:
            continue  # a scorer that did not score both on any feature has nothing to pair
        a = np.array([first.scores[f][scorer] for f in features])
        b = np.array([second.scores[f][scorer] for f in features])
        metric = f"{scorer} {PRIMARY_METRIC[scorer]}"
        rows += [row(names[0], metric, a, None, seed), row(names[1], metric, b, None, seed),
                 row(f"{names[0]} - {names[1]}", metric, a - b, None, seed)]
        rows += [EvalRow(f"{names[0]} - {names[1]}", f"{scorer} {outcome}", float(count), len(features),
                         float("nan"), float("nan"))
                 for outcome, count in (("wins", (a > b).sum()), ("losses", (a < b).sum()), ("ties", (a == b).sum()))]
    both = sorted(set(first.texts) & set(second.texts))
    for name, labels in zip(names, (first, second), strict=True):
        tokens = np.array([labels.tokens[f] for f in both], dtype=np.float64)
        rows.append(row(name, "explainer LLM tokens per feature", tokens, None, seed))
    return rows


def control_rows(control: list[dict], scorers: list[str]) -> list[EvalRow]:
    """The set's random-model control beside the compared scores: each scorer's control mean, with its interval."""
    return [EvalRow(f"control: {c['explainer']} on {c['control_set']}", f"{c['scorer']} {c['metric']}",
                    c["control"]["mean"], c["control"]["n"], c["control"].get("mean_low", math.nan),
                    c["control"].get("mean_high", math.nan))
            for c in control if c["scorer"] in scorers and c["metric"] == PRIMARY_METRIC[c["scorer"]]]


@dataclasses.dataclass
class Comparison:
    run_id: str
    set_id: str
    names: tuple[str, str]
    rows: list[EvalRow]


def run_compare(catalog_path: Path, set_ref: str, first: str, second: str, scorers: list[str],
                seed: int = 0) -> Comparison:
    unknown = [s for s in scorers if s not in PRIMARY_METRIC]
    if unknown:
        raise InterpError(f"unknown scorers {unknown}; expected some of {', '.join(PRIMARY_METRIC)}")
    with Catalog(Path(catalog_path), read_only=True) as catalog:
        set_id = catalog.feature_set(set_ref)["feature_set_id"]
        configs = [resolve(catalog, set_id, spec) for spec in (first, second)]
        if configs[0] == configs[1]:
            raise InterpError(f"'{first}' and '{second}' are the same configuration; compare two different ones")
        labels = [read_labels(catalog, set_id, *config) for config in configs]
        control = newest_control(catalog, set_id)
    names = (label_of(configs[0]), label_of(configs[1]))
    rows = paired_rows(labels[0], labels[1], names, scorers, seed) + control_rows(control, scorers)
    with Catalog.run(catalog_path, "eval", {"eval": "compare", "feature_set": set_id, "a": list(configs[0]),
                                            "b": list(configs[1]), "scorers": scorers, "seed": seed}) as run_id:
        with Catalog(catalog_path) as catalog:
            catalog.record_eval(run_id, "compare", [dataclasses.asdict(r) | {"details": json.dumps({})}
                                                    for r in rows])
    return Comparison(run_id, set_id, names, rows)
