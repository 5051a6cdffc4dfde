"""The embedder behind the embedding scorer and search keeps vectors by text, so excerpts that many
features share (their windows repeat) are embedded once."""

import numpy as np
import pytest

from evals.scorers import embedding
from evals.scorers.embedding import Embedder


@pytest.fixture(scope="module")
def embedder():
    return Embedder(device="cpu")


def test_repeated_texts_are_embedded_once_and_give_the_same_vectors(embedder, monkeypatch):
    texts = ["the cat sat", "a dog barked", "the cat sat", "rain in Paris"]
    direct = embedder.model.encode(list(dict.fromkeys(texts)), normalize_embeddings=True, convert_to_numpy=True)
    embedder._cache.clear()
    asked: list[list[str]] = []
    encode = embedder.model.encode
    monkeypatch.setattr(embedder.model, "encode", lambda batch, **kw: asked.append(list(batch)) or encode(batch, **kw))
    first = embedder.embed(texts)
    again = embedder.embed(["rain in Paris", "the cat sat", "something new"])
    assert asked == [["the cat sat", "a dog barked", "rain in Paris"], ["something new"]]
    assert first.shape == (4, embedder.dim) and first.dtype == np.float32
    np.testing.assert_allclose(first[[0, 1, 3]], direct, atol=1e-5)
    np.testing.assert_array_equal(first[0], first[2])
    np.testing.assert_array_equal(again[:2], first[[3, 0]])
    assert embedder.embed([]).shape == (0, embedder.dim)


def test_the_cache_keeps_only_the_most_recent_texts(embedder, monkeypatch):
    monkeypatch.setattr(embedding, "CACHED_TEXTS", 2)
    embedder._cache.clear()
    embedder.embed(["one", "two"])
    embedder.embed(["one"])  # "one" is now the most recent
    embedder.embed(["three"])
    assert list(embedder._cache) == ["one", "three"]
