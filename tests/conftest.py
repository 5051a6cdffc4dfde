"""Tiny models built from a config (random weights, seconds to make) and small corpora on disk."""

import random
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

SPECIALS = ["<pad>", "<bos>", "<eos>", "<unk>"]
WORDS = (
    "the a cat dog red blue green monday tuesday friday one two three seven paris london tokyo "
    "runs jumps sleeps quickly slowly and or but ( ) \" . , ! ? is was big small happy sad"
).split()


def tiny_tokenizer() -> PreTrainedTokenizerFast:
    vocab = {token: index for index, token in enumerate(SPECIALS + WORDS)}
    backend = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def tiny_configs(vocab_size: int) -> dict:
    common = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return {
        "gpt2": GPT2Config(n_positions=128, n_embd=32, n_layer=3, n_head=2, **common),
        "llama": LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2,
                             num_key_value_heads=1, max_position_embeddings=128, **common),
        "gemma3": Gemma3TextConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2,
                                   num_key_value_heads=1, head_dim=16, sliding_window=16,
                                   max_position_embeddings=128, **common),
    }


def save_tiny_model(name: str, folder: Path) -> Path:
    """A tiny model ('gpt2', 'llama' or 'gemma3') with seeded random weights, saved with its tokenizer."""
    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_configs(len(tokenizer))[name]).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory) -> dict[str, Path]:
    """Saved tiny GPT-2, Llama and Gemma 3 folders that `load_subject_model` loads by path."""
    names = tiny_configs(vocab_size=1)  # only its keys are used
    return {name: save_tiny_model(name, tmp_path_factory.mktemp(f"tiny-{name}")) for name in names}


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n)]


@pytest.fixture
def text_corpus(tmp_path) -> Path:
    """A glob over three small text files."""
    folder = tmp_path / "corpus"
    folder.mkdir()
    lines = sentences(300)
    for index in range(3):
        (folder / f"part{index}.txt").write_text("\n".join(lines[index::3]))
    return folder / "*.txt"
