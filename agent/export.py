"""`interp export`: a feature set's features, explanations and scores as Parquet tables, or as the
batched JSONL that Neuronpedia imports.

Neuronpedia layout: `{modelId}/{sourceId}/{features,explanations,activations}/batch-N.jsonl.gz`, 1024
rows a file, `sourceId = "{layer}-{setId}"`, and every `index` a string.
"""

import gzip
import json
import re
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from tools.catalog import Catalog
from tools.errors import InterpError

BATCH_ROWS = 1024
PARQUET_QUERIES = {
    "features": "SELECT * FROM features WHERE feature_set_id = ? ORDER BY feature",
    "explanations": "SELECT * FROM explanations WHERE feature_set_id = ? ORDER BY feature, created_at",
    "scores": "SELECT s.*, e.feature FROM scores s JOIN explanations e USING (explanation_id) "
              "WHERE e.feature_set_id = ? ORDER BY e.feature, s.created_at",
}


def require_labels(catalog: Catalog) -> None:
    if not catalog.has_labels():
        raise InterpError(f"catalog '{catalog.path}' has no labels yet; run `interp label` first")


def require_empty(out: Path) -> None:
    """An export never mixes with what a folder held before (stale batches would read as part of it)."""
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InterpError(f"--out '{out}' is not an empty folder; choose a new or empty one")


def export_parquet(catalog: Catalog, set_id: str, out: Path) -> list[Path]:
    """One Parquet file a table. Embeddings come out as FLOAT[]: cast to FLOAT[dim] after loading them back."""
    require_labels(catalog)
    require_empty(out)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, sql in PARQUET_QUERIES.items():
        path = out / f"{name}.parquet"
        pq.write_table(catalog.con.sql(sql, params=[set_id]).to_arrow_table(), path)
        written.append(path)
    return written


def source_id(feature_set: dict) -> str:
    """'mlp.6-019bd3b7' -> '6-mlp-019bd3b7', the '{layer}-{setId}' form Neuronpedia uses."""
    hook = feature_set["hook"]
    match = re.fullmatch(r"([a-z_]+)\.(\d+)", hook)
    if not match:
        raise InterpError(f"cannot name a Neuronpedia source for hook '{hook}'")
    site, layer = match.groups()
    rest = feature_set["feature_set_id"].removeprefix(hook).lstrip("-")
    return f"{layer}-{site.replace('_', '-')}-{rest}"


def model_id(name: str) -> str:
    """A folder name made of the model's: never empty, never '.' or '..', so it stays inside --out."""
    return re.sub(r"[^A-Za-z0-9._-]+", "-", Path(name).name).strip("-.").lower() or "model"


def write_batches(folder: Path, rows: Iterator[dict]) -> int:
    folder.mkdir(parents=True, exist_ok=True)
    count, number = 0, 0
    batch: list[dict] = []

    def flush() -> None:
        with gzip.open(folder / f"batch-{number}.jsonl.gz", "wt", encoding="utf-8") as handle:
            handle.writelines(json.dumps(row, ensure_ascii=False) + "\n" for row in batch)

    for row in rows:
        batch.append(row)
        count += 1
        if len(batch) == BATCH_ROWS:
            flush()
            batch, number = [], number + 1
    if batch:
        flush()
    return count


def export_neuronpedia(catalog: Catalog, set_id: str, out: Path) -> dict[str, int]:
    require_labels(catalog)
    require_empty(out)
    feature_set = catalog.feature_set(set_id)
    ids = {"modelId": model_id(feature_set["model"]), "layer": source_id(feature_set)}
    root = out / ids["modelId"] / ids["layer"]

    def features() -> Iterator[dict]:
        for row in catalog.con.execute("SELECT feature, max_act, density FROM features WHERE feature_set_id = ? "
                                       "ORDER BY feature", [set_id]).fetchall():
            yield ids | {"index": str(row[0]), "maxActApprox": row[1], "frac_nonzero": row[2]}

    def explanations() -> Iterator[dict]:
        cursor = catalog.con.execute(
            "SELECT e.feature, e.text, e.explainer, e.llm, e.prompt_hash, e.explanation_id, "
            "list({'scorer': s.scorer, 'metric': s.metric, 'value': s.value, 'n': s.n, 'ci_low': s.ci_low, "
            "'ci_high': s.ci_high}) FILTER (WHERE s.status = 'ok') FROM explanations e "
            "LEFT JOIN scores s USING (explanation_id) WHERE e.feature_set_id = ? AND e.status = 'ok' "
            "GROUP BY ALL ORDER BY e.feature", [set_id])
        for feature, text, explainer, llm, prompt_hash, explanation_id, scores in cursor.fetchall():
            yield ids | {"index": str(feature), "description": text, "typeName": explainer,
                         "explanationModelName": llm, "promptHash": prompt_hash, "id": explanation_id,
                         "scores": scores or []}

    def activations() -> Iterator[dict]:
        cursor = catalog.con.execute(
            "SELECT e.feature, e.bucket, e.rank, w.tokens, e.acts FROM examples e "
            "JOIN windows w USING (feature_set_id, window_id) WHERE e.feature_set_id = ? AND e.bucket = 'top' "
            "ORDER BY e.feature, e.rank", [set_id])
        while chunk := cursor.fetchmany(BATCH_ROWS):
            for feature, bucket, rank, tokens, values in chunk:
                peak = max(range(len(values)), key=values.__getitem__)
                yield ids | {"index": str(feature), "tokens": tokens, "values": values, "maxValue": values[peak],
                             "maxValueTokenIndex": peak, "minValue": min(values), "bucket": bucket, "rank": rank}

    return {name: write_batches(root / name, rows()) for name, rows in
            (("features", features), ("explanations", explanations), ("activations", activations))}
