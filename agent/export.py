"""`interp export`: a feature set's features, explanations and scores as Parquet tables; and the helpers
the Neuronpedia export (agent/neuronpedia/export.py) shares: gzipped JSONL batches of 1024 rows a file.
"""

import gzip
import json
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
