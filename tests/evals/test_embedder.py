"""The embedder behind the embedding scorer and search keeps vectors by text, so excerpts that many
features share (their windows repeat) are embedded once."""

import threading
import time
from concurrent.futures import ThreadPoolExecutor

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


def test_texts_asked_for_while_a_batch_runs_go_together_in_the_next(embedder, monkeypatch):
    """Workers scoring different features at once: the first call embeds alone; the seven that arrive
    while it runs share one forward pass, and every caller gets its own texts' vectors."""
    embedder._cache.clear()
    started = threading.Event()
    asked: list[list[str]] = []
    encode = embedder.model.encode

    def slow_encode(batch, **kw):
        asked.append(list(batch))
        started.set()
        if len(asked) == 1:  # the first batch runs until the other seven callers' texts all wait for the next
            deadline = time.monotonic() + 60
            while len(embedder._waiting.texts) < 8:
                assert time.monotonic() < deadline, "the seven other callers did not arrive within 60 s"
                time.sleep(0.001)
        return encode(batch, **kw)

    monkeypatch.setattr(embedder.model, "encode", slow_encode)
    texts = [[f"feature {i} excerpt", "a shared excerpt"] for i in range(8)]
    with ThreadPoolExecutor(8) as pool:
        first = pool.submit(embedder.embed, texts[0])
        started.wait()
        rest = list(pool.map(embedder.embed, texts[1:]))
    assert len(asked) == 2 and sorted(asked[1]) == sorted({t for pair in texts[1:] for t in pair})
    direct = encode([t for pair in texts for t in pair], normalize_embeddings=True, convert_to_numpy=True)
    for got, want in zip([first.result(), *rest], direct.reshape(8, 2, -1), strict=True):
        np.testing.assert_allclose(got, want, atol=1e-5)


def test_a_failed_batch_fails_every_caller_waiting_on_it_and_the_next_batch_runs(embedder, monkeypatch):
    embedder._cache.clear()
    monkeypatch.setattr(embedder.model, "encode", lambda batch, **kw: (_ for _ in ()).throw(RuntimeError("boom")))
    with pytest.raises(RuntimeError, match="boom"):
        embedder.embed(["anything"])
    monkeypatch.undo()
    assert embedder.embed(["anything"]).shape == (1, embedder.dim)


def test_remembered_vectors_are_used_only_when_they_could_be_this_embedders(embedder, monkeypatch):
    """Vectors come from a catalog, which may come from someone else."""
    embedder._cache.clear()
    unit = np.zeros(embedder.dim, np.float32)
    unit[0] = 1.0
    embedder.remember({"kept": unit.tolist(), "short": [1.0], "nan": [float("nan")] * embedder.dim,
                       "hole": [None] * embedder.dim, "long": (2 * unit).tolist(), "words": ["a"] * embedder.dim})
    asked: list[list[str]] = []
    encode = embedder.model.encode
    monkeypatch.setattr(embedder.model, "encode", lambda batch, **kw: asked.append(list(batch)) or encode(batch, **kw))
    vectors = embedder.embed(["kept", "short", "nan", "hole", "long", "words"])
    np.testing.assert_array_equal(vectors[0], unit)
    assert asked == [["short", "nan", "hole", "long", "words"]] and np.isfinite(vectors).all()
