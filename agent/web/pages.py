"""What each page shows, as plain data: the templates render it and the JSON API returns it as is."""

from dataclasses import asdict
from urllib.parse import urlencode

from agent.web.plots import bar_chart, effect_bars
from agent.web.queries import (
    FeatureFilter,
    audit_run,
    audit_runs,
    eval_tables,
    feature_experiments,
    feature_sets_overview,
    features_page,
    recent_runs,
    score_distributions,
)
from evals.control import control_means, newest_control
from evals.records import activation_level
from tools.catalog import Catalog

SHADES = 10
NEIGHBOURS = 8


def home(catalog: Catalog) -> dict:
    return {"sets": feature_sets_overview(catalog), "runs": recent_runs(catalog)}


def feature_set(catalog: Catalog, ref: str, query: FeatureFilter) -> dict:
    row = catalog.feature_set(ref)
    set_id = row["feature_set_id"]
    distributions = score_distributions(catalog, set_id)
    found = features_page(catalog, set_id, query, list(distributions))
    control = newest_control(catalog, set_id)
    return {"set": _set_summary(row), "features": found.rows, "total": found.total, "page": found.page,
            "control": control, "control_means": control_means(control),
            "pages": found.pages, "metrics": list(distributions), "explainers": catalog.explainers(set_id)
            if catalog.has_labels() else [],
            "distributions": {metric: d | {"chart": asdict(bar_chart(d["counts"], d["start"], d["stop"]))}
                              for metric, d in distributions.items()}}


def _set_summary(row: dict) -> dict:
    return {key: row[key] for key in ("feature_set_id", "model", "hook", "kind", "n_features", "tokens",
                                      "window_length", "source_path", "created_at")}


def shaded(tokens: list[str], acts: list[float], scale: float) -> list[dict]:
    """Each token with its activation and a shade 0..10 relative to the feature's max over the corpus (the
    scale explainers see; any positive activation shows, at 1 at least)."""
    out = []
    for token, act in zip(tokens, acts, strict=False):
        level = max(1, activation_level(act, scale, SHADES)) if act > 0 and scale > 0 else 0
        out.append({"text": token, "act": act, "level": level})
    return out


def feature(catalog: Catalog, ref: str, index: int) -> dict:
    row = catalog.feature_set(ref)
    set_id = row["feature_set_id"]
    stats = catalog.feature(set_id, index)
    scale = float(stats["max_act"] or 0.0)
    examples = [{"bucket": e["bucket"], "rank": e["rank"], "quantile": e["quantile"], "split": e["split"],
                 "max_act": e["max_act"], "tokens": shaded(e["tokens"], e["acts"], scale)}
                for e in catalog.examples(set_id, index)]
    counts = stats["hist_counts"] or []
    explanations = catalog.feature_explanations(set_id, index)
    return {"set": _set_summary(row), "feature": index,
            "stats": {key: stats[key] for key in ("max_act", "min_act", "mean_act", "density", "window_density",
                                                  "n_tokens", "hist_max", "quantile_edges")},
            "histogram": asdict(bar_chart(counts, 0.0, float(stats["hist_max"] or 0.0))) if counts else None,
            "examples": examples, "explanations": explanations,
            "experiments": feature_experiments(catalog, set_id, index),
            "neighbours": neighbours(catalog, explanations, set_id, index)}


def neighbours(catalog: Catalog, explanations: list[dict], set_id: str, index: int) -> list[dict]:
    """Features of any set whose explanation is nearest this feature's latest one (by its stored embedding)."""
    if not explanations:
        return []
    latest = explanations[-1]
    found = catalog.con.execute("SELECT embedding FROM explanations WHERE explanation_id = ?",
                                [latest["explanation_id"]]).fetchall()
    if not found or found[0][0] is None or not latest["embedder"]:
        return []
    rows = catalog.search(list(found[0][0]), latest["embedder"], NEIGHBOURS + 1)
    return [r for r in rows if (r["feature_set_id"], r["feature"]) != (set_id, index)][:NEIGHBOURS]


def search(catalog: Catalog, vector: list[float], embedder: str, n: int, ref: str | None) -> list[dict]:
    set_id = catalog.feature_set(ref)["feature_set_id"] if ref else None
    return catalog.search(vector, embedder, n, set_id)


def query_string(query: FeatureFilter, **changes) -> str:
    """The page's query with some fields changed, for sort and page links."""
    values = query.model_dump(exclude_defaults=True) | changes
    return urlencode({key: value for key, value in values.items() if value is not None and value != ""})


MAX_TRY_CHARS = 2000
EFFECT_TOKENS = 10


def model_side(bench, index: int, text: str) -> dict:
    """What needs the subject model (loaded once per set, on first use): the tokens the feature's direct
    logit effect raises and lowers, for an SAE latent the latents with the nearest decoder directions, and the
    feature's activation on the visitor's text."""
    import torch

    from tools.experiments.interventions import direct_logit_effect, token_shifts

    bench.check_feature(index)
    subject, source = bench.subject_and_source
    effect = direct_logit_effect(subject, source, index)
    out: dict = {"feature": index, "promotes": [asdict(s) for s in token_shifts(subject, effect, EFFECT_TOKENS, True)],
                 "suppresses": [asdict(s) for s in token_shifts(subject, effect, EFFECT_TOKENS, False)],
                 "decoder_neighbours": [], "text": text[:MAX_TRY_CHARS], "activations": []}
    if source.sae is not None:
        with torch.inference_mode():
            directions = torch.nn.functional.normalize(source.sae.W_dec.float(), dim=1)
            similarity = directions @ directions[index]
            similarity[index] = -2.0
            top = similarity.topk(min(NEIGHBOURS, len(similarity) - 1))
        out["decoder_neighbours"] = [{"feature": int(i), "cosine": float(v)}
                                     for v, i in zip(top.values, top.indices, strict=True)]
    if out["text"].strip():
        record = bench.activations_on(index, [out["text"]])[0]
        scale = max(bench.max_act(index), max(record.values, default=0.0))
        out["activations"] = shaded(record.tokens, record.values, scale)
    return out


def audits(catalog: Catalog) -> dict:
    return {"audits": audit_runs(catalog)}


def audit(catalog: Catalog, run_id: str) -> dict:
    concepts = audit_run(catalog, run_id)
    for concept in concepts:
        concept["effects"] = effect_bars(
            [(f"{c['feature']} ablation", c["ablation"]) for c in concept["candidates"]]
            + [(f"{c['feature']} steering", c["steering"]) for c in concept["candidates"]])
    return {"run_id": run_id, "concepts": concepts}


def evals(catalog: Catalog) -> dict:
    return {"tables": eval_tables(catalog)}
