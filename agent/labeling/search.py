"""`interp search`: features whose explanations mean what the query means, by embedding similarity."""

from pathlib import Path
from typing import Protocol

import numpy as np

from evals.scorers.embedding import embedder_folder
from evals.scorers.query_encoder import load_query_encoder
from tools.catalog import Catalog


class Embeds(Protocol):
    name: str

    def embed(self, texts: list[str]) -> np.ndarray: ...


def nearest_explanations(catalog_path: Path, embedder: Embeds, query: str, limit: int,
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
    folder, name = embedder_folder(embedder_spec)
    # One query: numpy where it gives the library's vectors exactly, so a search loads no torch.
    embedder: Embeds | None = load_query_encoder(folder, name)
    if embedder is None:
        from evals.scorers.embedding import Embedder

        embedder = Embedder(embedder_spec, device="cpu")
    return nearest_explanations(catalog_path, embedder, query, limit, set_id), embedder.name
