"""`interp search`: features whose explanations mean what the query means, by embedding similarity."""

from pathlib import Path

from evals.scorers.embedding import Embedder
from tools.catalog import Catalog


def nearest_explanations(catalog_path: Path, embedder: Embedder, query: str, limit: int,
                         set_id: str | None = None) -> list[dict]:
    """Explanations embedded by `embedder`, most similar to `query` first."""
    vector = embedder.embed([query])[0].tolist()
    with Catalog(catalog_path, read_only=True) as catalog:
        return catalog.search(vector, embedder.name, limit, set_id)


def search_explanations(catalog_path: Path, query: str, limit: int, feature_set: str | None,
                        embedder_spec: str) -> tuple[list[dict], str]:
    """The matches, and the name of the embedder they were compared under."""
    with Catalog(catalog_path, read_only=True) as catalog:
        set_id = catalog.feature_set(feature_set)["feature_set_id"] if feature_set else None
    embedder = Embedder(embedder_spec, device="cpu")
    return nearest_explanations(catalog_path, embedder, query, limit, set_id), embedder.name
