"""`interp export --format neuronpedia`: a labeled feature set as the dataset folder Neuronpedia's admin
import loads (`apps/webapp/app/api/admin/import/route.ts`, `lib/db/import.ts`).

    {modelId}/{sourceId}/model.jsonl, sourceset.jsonl, source.jsonl     created with Prisma: every key a field
    {modelId}/{sourceId}/{features,activations,explanations}/batch-N.jsonl.gz
    {modelId}/{sourceId}/explanation_scores/batch-N.jsonl.gz            ExplanationScore rows (not imported by
                                                                        the route: load them the same way)
    {modelId}/{sourceId}/config/{explanation_type,explanation_model_type,explanation_score_type,
                                 explanation_score_model}.jsonl          the type rows our rows name

The batch files are loaded with the first line's keys as the columns (an unknown key is dropped silently),
`ON CONFLICT DO NOTHING`, straight into Postgres: so every row carries every NOT NULL column that has no
database default (ids, `creatorId`, `authorId`, ...), every row of a file has the same keys, and ids are
derived from ours so a second import of the same export adds nothing. The route reads type rows from its
own config bucket, not from the dataset: an admin adds `config/*.jsonl` there (or upserts them) first.
"""

import json
from collections.abc import Iterator
from pathlib import Path

from agent.export import require_empty, require_labels, write_batches
from agent.neuronpedia.names import (
    IMPORTED,
    NEURONPEDIA_SCORE_TYPES,
    PRIMARY_METRIC,
    SCORE_TYPES,
    explanation_row_id,
    explanation_type,
    llm_type_name,
    np_model_id,
    np_source,
    stable_id,
)
from tools.catalog import Catalog

CREATOR_NAME = "interp-agent"


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")


def export_neuronpedia(catalog: Catalog, set_id: str, out: Path, creator_id: str,
                       model_override: str | None = None, source_override: str | None = None) -> dict[str, int]:
    require_labels(catalog)
    require_empty(out)
    feature_set = catalog.feature_set(set_id)
    model = catalog.model(feature_set["model_id"])
    model_id = np_model_id(feature_set["model"], model_override)
    source_id, set_name = np_source(feature_set, source_override)
    root = out / model_id / source_id
    neuron = {"modelId": model_id, "layer": source_id}
    write_jsonl(root / "model.jsonl", [{
        "id": model_id, "displayName": feature_set["model"], "displayNameShort": model_id, "creatorId": creator_id,
        "layers": model["n_layers"], "neuronsPerLayer": feature_set["n_features"], "dimension": model["d_model"],
        "owner": feature_set["model"].split("/")[0] if "/" in feature_set["model"] else "unknown"}])
    write_jsonl(root / "sourceset.jsonl", [{
        "modelId": model_id, "name": set_name, "description": f"{feature_set['kind']} features of {feature_set['hook']}"
        f" cached and labeled by interp-agent (feature set {set_id})", "type": feature_set["kind"],
        "creatorName": CREATOR_NAME, "creatorId": creator_id, "urls": []}])
    write_jsonl(root / "source.jsonl", [{
        "id": source_id, "modelId": model_id, "setName": set_name, "creatorId": creator_id, "hasDashboards": True,
        "num_tokens_in_prompt": feature_set["window_length"], "notes": f"interp-agent feature set {set_id}"}])

    def features() -> Iterator[dict]:
        # density is the fraction of tokens above the cache threshold (0 by default: the non-zero fraction)
        for feature, max_act, density in catalog.con.execute(
                "SELECT feature, max_act, density FROM features WHERE feature_set_id = ? ORDER BY feature",
                [set_id]).fetchall():
            yield neuron | {"index": str(feature), "sourceSetName": set_name, "creatorId": creator_id,
                            "maxActApprox": max_act or 0.0, "frac_nonzero": density or 0.0,
                            "hookName": feature_set["hf_module"]}

    def activations() -> Iterator[dict]:
        cursor = catalog.con.execute(
            "SELECT e.feature, e.bucket, e.rank, w.tokens, e.acts FROM examples e "
            "JOIN windows w USING (feature_set_id, window_id) WHERE e.feature_set_id = ? AND e.bucket = 'top' "
            "ORDER BY e.feature, e.rank", [set_id])
        while chunk := cursor.fetchmany(1024):
            for feature, bucket, rank, tokens, values in chunk:
                peak = max(range(len(values)), key=values.__getitem__)
                yield neuron | {"id": stable_id(set_id, feature, bucket, rank), "index": str(feature),
                                "tokens": tokens, "values": values, "maxValue": values[peak],
                                "maxValueTokenIndex": peak, "minValue": min(values), "creatorId": creator_id,
                                "dataSource": f"interp-agent:{set_id}:{bucket}:{rank}"}

    explanation_rows = catalog.con.execute(
        "SELECT feature, text, explainer, llm, explanation_id FROM explanations WHERE feature_set_id = ? "
        "AND status = 'ok' ORDER BY feature, created_at", [set_id]).fetchall()
    score_rows = catalog.con.execute(
        "SELECT s.explanation_id, s.scorer, s.llm, s.metric, s.value, s.n, s.ci_low, s.ci_high, s.prompt_hash "
        "FROM scores s JOIN explanations e USING (explanation_id) WHERE e.feature_set_id = ? AND e.status = 'ok' "
        "AND s.status = 'ok' ORDER BY e.feature, s.scorer, s.metric", [set_id]).fetchall()
    ours = [row for row in explanation_rows if not row[2].startswith(IMPORTED)]  # imported: their types exist
    explanation_types = {explanation_type(row[2]) for row in ours}
    explanation_models = {name for name in (llm_type_name(row[3]) for row in ours) if name}

    def explanations() -> Iterator[dict]:
        for feature, text, explainer, llm, explanation_id in explanation_rows:
            yield neuron | {"id": explanation_row_id(explanation_id), "index": str(feature), "description": text,
                            "authorId": creator_id, "typeName": explanation_type(explainer),
                            "explanationModelName": llm_type_name(llm, explainer),
                            "notes": f"interp-agent explanation {explanation_id} ({explainer}, {llm or 'no LLM'})"}

    by_score: dict[tuple, dict] = {}
    for explanation_id, scorer, llm, metric, value, n, low, high, prompt_hash in score_rows:
        entry = by_score.setdefault((explanation_id, scorer, llm, prompt_hash), {"metrics": {}})
        entry["metrics"][metric] = {"value": value, "n": n, "ci_low": low, "ci_high": high}
    score_models = {llm_type_name(llm) or f"interp-agent_{scorer}" for _, scorer, llm, _ in by_score}

    def scores() -> Iterator[dict]:
        for (explanation_id, scorer, llm, prompt_hash), entry in by_score.items():
            metric = PRIMARY_METRIC.get(scorer)
            if scorer not in SCORE_TYPES or metric not in entry["metrics"]:
                continue
            yield {"id": stable_id(explanation_id, scorer, llm, prompt_hash), "initiatedByUserId": creator_id,
                   "value": entry["metrics"][metric]["value"], "explanationId": explanation_row_id(explanation_id),
                   "explanationScoreTypeName": SCORE_TYPES[scorer],
                   "explanationScoreModelName": llm_type_name(llm) or f"interp-agent_{scorer}",
                   "jsonDetails": json.dumps({"scorer": scorer, "metric": metric, "llm": llm,
                                              "prompt_hash": prompt_hash, "metrics": entry["metrics"]})}

    write_config(root / "config", creator_id, explanation_types, explanation_models,
                 {SCORE_TYPES[s] for _, s, _, _ in by_score if s in SCORE_TYPES} - NEURONPEDIA_SCORE_TYPES,
                 score_models)
    return {name: write_batches(root / name, rows()) for name, rows in
            (("features", features), ("activations", activations), ("explanations", explanations),
             ("explanation_scores", scores))}


def write_config(folder: Path, creator_id: str, explanation_types: set[str], explanation_models: set[str],
                 score_types: set[str], score_models: set[str]) -> None:
    """The type rows the exported rows name, in the files `importConfigFromS3` reads."""
    def described(name: str, what: str) -> dict:
        return {"name": name, "displayName": name, "description": f"{what} ({name}), written by interp-agent",
                "creatorName": CREATOR_NAME}

    write_jsonl(folder / "explanation_type.jsonl", [described(name, "explainer") | {
        "creatorId": creator_id, "featured": False} for name in sorted(explanation_types)])
    write_jsonl(folder / "explanation_model_type.jsonl", [
        described(name, "explainer LLM") | {"featured": False} for name in sorted(explanation_models)])
    write_jsonl(folder / "explanation_score_type.jsonl", [
        described(name, "scorer") | {"creatorId": creator_id, "featured": False} for name in sorted(score_types)])
    write_jsonl(folder / "explanation_score_model.jsonl", [
        described(name, "scorer model") | {"featured": False} for name in sorted(score_models)])
