"""The numpy query encoder gives sentence-transformers' own vectors for the embedded embedder (search compares
queries with explanation vectors the library made), and declines folders it would not reproduce exactly."""

import json
import shutil

import numpy as np
import pytest

from evals.scorers.embedding import EMBEDDED_EMBEDDER, Embedder, embedded_embedder_path, embedder_folder
from evals.scorers.query_encoder import load_query_encoder

TEXTS = ["names of cities", 'the tokens "get", "⏎", as in "to get"', "Ünïcödé 日本語 and émoji 🙂",
         " ".join(["a long query"] * 200)]  # longer than the model's 256 tokens: truncated alike


def test_the_numpy_encoder_gives_the_librarys_vectors():
    folder, name = embedder_folder(EMBEDDED_EMBEDDER)
    encoder = load_query_encoder(folder, name)
    assert encoder is not None and encoder.name == name == EMBEDDED_EMBEDDER
    ours = encoder.embed(TEXTS)
    theirs = Embedder(EMBEDDED_EMBEDDER, device="cpu").embed(TEXTS)
    assert ours.shape == theirs.shape and ours.dtype == np.float32
    assert float(np.abs(ours - theirs).max()) < 1e-5


@pytest.mark.parametrize("change", ["cls pooling", "no normalize", "another architecture"])
def test_a_folder_it_would_not_reproduce_is_left_to_the_library(tmp_path, change):
    folder = tmp_path / "embedder"
    shutil.copytree(embedded_embedder_path(), folder, ignore=shutil.ignore_patterns("model.safetensors"))
    (folder / "model.safetensors").symlink_to(embedded_embedder_path() / "model.safetensors")
    if change == "cls pooling":
        pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
        (folder / "1_Pooling" / "config.json").write_text(json.dumps(
            pooling | {"pooling_mode_cls_token": True, "pooling_mode_mean_tokens": False}))
    elif change == "no normalize":
        modules = json.loads((folder / "modules.json").read_text())
        (folder / "modules.json").write_text(json.dumps(modules[:2]))
    else:
        config = json.loads((folder / "config.json").read_text())
        (folder / "config.json").write_text(json.dumps(config | {"model_type": "roberta"}))
    assert load_query_encoder(folder, str(folder)) is None
    assert load_query_encoder(embedded_embedder_path(), EMBEDDED_EMBEDDER) is not None
