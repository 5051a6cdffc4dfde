"""What an MCP client reads about the catalog: feature sets, a set's features, and one feature's page, as
tool text (for an LLM to read) and as JSON resources.

Corpus tokens and explanations are untrusted text written by a corpus and by LLMs: every one goes
through `display_token`, the escaping the agent's own tools apply, so none can close a `<tool_result>`
delimiter or pass for a mark. Only the explain split's examples are shown; the held-out split is kept for
scoring what the client records.
"""

from typing import Literal

from pydantic import BaseModel, Field

from evals.records import display_token
from tools.catalog import Catalog

EXAMPLES_ON_PAGE = 10


class NoArgs(BaseModel, extra="forbid"):
    pass


class ListFeaturesArgs(BaseModel, extra="forbid"):
    order_by: Literal["max_act", "density", "mean_act"] = "max_act"
    n: int = Field(20, ge=1, le=200, description="how many features")


def _round(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.4g}")


def feature_sets(catalog: Catalog) -> list[dict]:
    rows = catalog.feature_sets()
    return [{"feature_set": row["feature_set_id"], "model": display_token(row["model"]), "hook": row["hook"],
             "kind": row["kind"], "features": row["n_features"], "tokens": row["tokens"]} for row in rows]


def feature_sets_text(catalog: Catalog) -> str:
    return "\n".join(f"{row['feature_set']}: {row['features']:,} {row['kind']} features at {row['hook']} of "
                     f"{row['model']}, cached over {row['tokens']:,} tokens" for row in feature_sets(catalog)) \
        or "no feature sets yet"


def features_text(catalog: Catalog, set_id: str, args: ListFeaturesArgs) -> str:
    explained = catalog.latest_explanations(set_id)
    lines = [f"{set_id}: top {args.n} features by {args.order_by}"]
    for row in catalog.top_features(set_id, args.order_by, args.n):
        label = explained.get(row["feature"], {}).get("text")
        lines.append(f"feature {row['feature']}: max {row['max_act'] or 0:.3g}, density {row['density'] or 0:.3%}"
                     + (f', explained as "{display_token(label)}"' if label else ""))
    return "\n".join(lines)


def feature_page(catalog: Catalog, set_id: str, feature: int) -> dict:
    """Stats, explain-split examples of each bucket, and every explanation with its scores."""
    stats = catalog.feature(set_id, feature)
    examples = [e for e in catalog.examples(set_id, feature) if e["split"] == "explain"]

    def shown(bucket: str) -> list[dict]:
        return [{"tokens": [display_token(token) for token in e["tokens"]], "acts": [_round(a) for a in e["acts"]],
                 "max_act": _round(e["max_act"])} for e in examples if e["bucket"] == bucket][:EXAMPLES_ON_PAGE]

    return {
        "feature_set": set_id, "feature": feature,
        "stats": {key: _round(stats[key]) for key in ("max_act", "mean_act", "density", "window_density")}
        | {"tokens": stats["n_tokens"], "histogram_max": _round(stats["hist_max"]),
           "histogram": stats["hist_counts"]},
        "examples": {bucket: shown(bucket) for bucket in ("top", "quantile", "random")},
        "explanations": [{"text": display_token(e["text"]), "explainer": display_token(e["explainer"]),
                          "llm": display_token(e["llm"] or ""),
                          "scores": {f"{s['scorer']} {s['metric']}": _round(s["value"]) for s in e["scores"]}}
                         for e in catalog.feature_explanations(set_id, feature)],
    }


def feature_summary_text(catalog: Catalog, set_id: str, feature: int) -> str:
    page = feature_page(catalog, set_id, feature)
    stats = page["stats"]
    lines = [f"feature {feature} of {set_id}: max {stats['max_act']}, mean {stats['mean_act']}, density "
             f"{(stats['density'] or 0):.3%} of {stats['tokens']:,} tokens, active in "
             f"{(stats['window_density'] or 0):.1%} of windows"]
    for explanation in page["explanations"]:
        scores = ", ".join(f"{name} {value}" for name, value in explanation["scores"].items()) or "not scored"
        lines.append(f'explained by {explanation["explainer"]} ({explanation["llm"] or "no LLM"}): '
                     f'"{explanation["text"]}" ({scores})')
    if not page["explanations"]:
        lines.append("no explanations yet")
    return "\n".join(lines)
