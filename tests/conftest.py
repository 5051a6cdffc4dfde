"""Fixtures: tiny models built from a config (random weights, seconds to make) and small corpora on disk."""

from pathlib import Path

import pytest

from tools.testing.tiny import save_tiny_model, sentences, tiny_configs


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Saved tiny GPT-2, Llama and Gemma 3 folders that `load_subject_model` loads by path."""
    names = tiny_configs(vocab_size=1)  # only its keys are used
    return {name: save_tiny_model(name, tmp_path_factory.mktemp(f"tiny-{name}")) for name in names}


@pytest.fixture
def text_corpus(tmp_path) -> Path:
    """A glob over three small text files."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    lines = sentences(300)
    for index in range(3):
        (folder / f"part{index}.txt").write_text("\n".join(lines[index::3]))
    return folder / "*.txt"
