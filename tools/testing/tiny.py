"""Tiny models built from a config (random weights, seconds to make) and the sentences to run them on:
what the tests and the benchmarks share, so neither imports the other."""

import dataclasses
import random
from pathlib import Path
from typing import Any

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import (
    AutoModelForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    LlamaConfig,
    PreTrainedTokenizerFast,
)

from tools.configs import CacheConfig
from tools.passes.cache import run_cache
from tools.sae.autoencoder import SAE

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


def tiny_bpe_tokenizer() -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer (GPT-2's pre-tokenizer) trained in milliseconds on the tiny sentences: it
    has tabs, digits and punctuation as real tokenizers do (any text tokenizes, byte by byte where no merge
    applies), which a simulator and a vLLM-protocol server need; the word-level one has none."""
    texts = sentences(200) + ["\t".join(str(i) for i in range(11)) + "\n", "Answer Yes or No. The feature responds."]
    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    backend.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", eos_token="<eos>",
                                   pad_token="<pad>", unk_token="<unk>")


def tiny_configs(vocab_size: int) -> dict:
    common: dict[str, Any] = dict(vocab_size=vocab_size, bos_token_id=1, eos_token_id=2, pad_token_id=0)
    return {
        "gpt2": GPT2Config(n_positions=128, n_embd=32, n_layer=3, n_head=2, **common),
        "llama": LlamaConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2,
                             num_key_value_heads=1, max_position_embeddings=128, **common),
        "gemma3": Gemma3TextConfig(hidden_size=32, intermediate_size=48, num_hidden_layers=3, num_attention_heads=2,
                                   num_key_value_heads=1, head_dim=16, sliding_window=16,
                                   max_position_embeddings=128, **common),
    }


def save_tiny_model(name: str, folder: Path, tokenizer: str = "words") -> Path:
    """A tiny model ('gpt2', 'llama' or 'gemma3') with seeded random weights, saved with its tokenizer:
    'words' (word-level, the tests' vocabulary) or 'bpe' (byte-level BPE, for simulation and servers)."""
    tokenizer_object = tiny_bpe_tokenizer() if tokenizer == "bpe" else tiny_tokenizer()
    torch.manual_seed(0)
    AutoModelForCausalLM.from_config(tiny_configs(len(tokenizer_object))[name]).save_pretrained(folder)
    tokenizer_object.save_pretrained(folder)
    return folder


def sentences(n: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 14))) for _ in range(n)]


def random_sae(d_in: int, d_sae: int, hook: str | None, seed: int = 0) -> SAE:
    """A ReLU SAE with seeded random weights (most latents off for a tiny model's small activations)."""
    generator = torch.Generator().manual_seed(seed)
    return SAE(torch.randn((d_in, d_sae), generator=generator) / d_in**0.5, -0.3 * torch.ones(d_sae),
               torch.randn((d_sae, d_in), generator=generator), torch.zeros(d_in), activation="relu", hook=hook)


def random_transcoder(d_model: int, d_tc: int, layer: int, k: int = 4, seed: int = 0, skip: bool = True) -> SAE:
    """A TopK skip transcoder for layer `layer` with seeded random weights, sized for a tiny model's MLP."""
    generator = torch.Generator().manual_seed(1000 + seed)
    W_enc = torch.randn((d_model, d_tc), generator=generator) / d_model**0.5
    W_dec = torch.randn((d_tc, d_model), generator=generator) * 0.01
    return SAE(W_enc, torch.zeros(d_tc), W_dec, torch.randn(d_model, generator=generator) * 1e-3, "topk",
               hook=f"mlp_in.{layer}", hook_out=f"mlp_out.{layer}", k=k,
               W_skip=torch.randn((d_model, d_model), generator=generator) * 0.01 if skip else None)


def cache_tiny_catalog(path: Path, model: Path, corpus: Path, sae_folder: Path) -> Path:
    """Neurons at mlp.1 (dense: every window is active) and latents of a sparse random SAE at resid_post.1."""
    sae = random_sae(32, 64, "resid_post.1")
    sae.b_enc.fill_(-0.05)  # the tiny model's residual stream has std ~0.03: a few percent of tokens fire
    sae.save_saelens(sae_folder)
    common = CacheConfig(model=str(model), corpus=str(corpus), tokens=2000, window=16, batch_size=8, top_k=5,
                         quantiles=4, per_quantile=2, random=8)
    run_cache(dataclasses.replace(common, hook="mlp.1"), path, progress=False)
    run_cache(dataclasses.replace(common, sae=str(sae_folder)), path, progress=False)
    return path
