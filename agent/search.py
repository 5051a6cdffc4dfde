"""`interp search`: features whose explanations mean what the query means, by embedding similarity."""

from pathlib import Path

from rich.table import Table

from agent.show import table_console
from tools.catalog import Catalog


def nearest_explanations(catalog_path: Path, embedder, query: str, limit: int,
                         set_id: str | None = None) -> list[dict]:
    """Explanations embedded by `embedder`, most similar to `query` first."""
    vector = embedder.embed([query])[0].tolist()
    with Catalog(catalog_path, read_only=True) as catalog:
        return catalog.search(vector, embedder.name, limit, set_id)


def search_explanations(catalog_path: Path, query: str, limit: int, feature_set: str | None,
                        embedder_spec: str) -> None:
    from evals.embedding import Embedder

    with Catalog(catalog_path, read_only=True) as catalog:
        set_id = catalog.feature_set(feature_set)["feature_set_id"] if feature_set else None
    embedder = Embedder(embedder_spec, device="cpu")
    rows = nearest_explanations(catalog_path, embedder, query, limit, set_id)
    console = table_console()
    if not rows:
        console.print(f"no explanations embedded with {embedder.name} in {catalog_path}; run `interp label` first")
        return
    table = Table(title=f"features matching {query!r}")
    for column in ("similarity", "feature set", "feature", "explainer", "explanation"):
        table.add_column(column, justify="right" if column in ("similarity", "feature") else "left")
    for row in rows:
        table.add_row(f"{row['similarity']:.3f}", row["feature_set_id"], str(row["feature"]), row["explainer"],
                      row["text"])
    console.print(table)
