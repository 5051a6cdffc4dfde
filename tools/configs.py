"""Run configurations: printed at the start of a run and stored with its results.

Kept apart from the code that runs them so the CLI can build its flags without importing torch. Each
field carries its flag's help (`option`), so the command line is generated from the config and the help
is written once.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any

from tools.defaults import EMBEDDED_CORPUS, EMBEDDED_MODEL
from tools.errors import InterpError

DEFAULT_HOOK = "mlp.6"


def option(default: Any, help: str) -> Any:
    """A config field with its command-line help."""
    return dataclasses.field(default=default, metadata={"help": help})


def require_positive(config: object, names: tuple[str, ...]) -> None:
    """A one-line error naming the flag, for the first of `names` that is zero or negative."""
    for name in names:
        value = getattr(config, name)
        if value <= 0:
            raise InterpError(f"--{name.replace('_', '-')} must be positive, got {value}")


@dataclass(frozen=True)
class ModelAndCorpus:
    """What every run that reads the subject model on a corpus names; the run configs extend it."""

    model: str = option(EMBEDDED_MODEL, "subject model: 'gemma-3-270m' (embedded), a local HF folder, a .gguf "
                                        "file, or a hub id")
    hook: str = option("", "hook point: mlp.L (neurons), resid_pre.L, resid_post.L, attn.L, or a TransformerLens "
                           "name; empty: the SAE's own hook, else mlp.6")
    corpus: str = option(EMBEDDED_CORPUS, "'fortunes' (embedded), a text/JSONL/Parquet file or glob, or a saved HF "
                                          "dataset folder")
    text_column: str = option("text", "column or JSON key holding the text (JSONL, Parquet, HF datasets)")
    window: int = option(64, "tokens per window, BOS included")
    bos: str = option("auto", "prepend BOS to each window: auto, always, never")
    seed: int = option(0, "seed for corpus order and sampling")
    device: str = option("auto", "auto, cuda, mps, cpu")
    dtype: str = option("auto", "auto (bf16 on GPU, fp32 on CPU), float32, bfloat16, float16")


@dataclass(frozen=True)
class CacheConfig(ModelAndCorpus):
    sae: str = option("", "SAE or transcoder file or folder (SAELens, Gemma Scope 1/2, sparsify, a circuit-tracer "
                          "set with --hook mlp_in.L): cache its latents instead")
    tokens: int = option(200_000, "token budget")
    batch_size: int = option(16, "windows per forward pass")
    top_k: int = option(50, "top-activating windows kept per feature")
    quantiles: int = option(10, "quantile bins over active windows")
    per_quantile: int = option(10, "samples kept per quantile bin")
    random: int = option(20, "random windows kept per feature as negatives")
    threshold: float = option(0.0, "a token is active above this activation")
    histogram_bins: int = option(64, "bins of each feature's activation histogram (a power of two)")
    checkpoint_seconds: float = option(30.0, "seconds between resume checkpoints")

    def validate(self) -> None:
        require_positive(self, ("tokens", "window", "batch_size", "top_k", "quantiles", "per_quantile",
                                "histogram_bins"))
        if self.random < 0:
            raise InterpError(f"--random must be zero or more, got {self.random}")
        if self.window < 2:
            raise InterpError(f"--window must be at least 2 tokens, got {self.window}")

    def results_hash(self) -> str:
        """Identifies a run's results: every field but the checkpoint cadence, which changes none."""
        fields = {k: v for k, v in dataclasses.asdict(self).items() if k != "checkpoint_seconds"}
        return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class SAEEvalConfig(ModelAndCorpus):
    hook: str = option("", "hook point; empty: the one the SAE file names")
    sae: str = option("", "SAE file or folder (SAELens, Gemma Scope 1/2, sparsify)")
    tokens: int = option(4096, "held-out tokens to evaluate on")
    """Documents the SAE trainer never sees (see tools.data.corpus)."""
    batch_size: int = option(4, "windows per forward pass (each holds [batch, seq, vocab] logits)")

    def validate(self) -> None:
        if not self.sae:
            raise InterpError("--sae is required: the SAE file or folder to evaluate")
        require_positive(self, ("tokens", "window", "batch_size"))


@dataclass(frozen=True)
class TrainConfig(ModelAndCorpus):
    hook: str = option("resid_post.6", "hook point the SAE reads")
    """The default is the middle of Gemma 3 270M's residual stream."""
    out: str = option("sae-out", "folder for the trained SAE (SAELens format)")
    tokens: int = option(300_000, "training tokens (from the corpus's train part)")
    """Held-out documents are kept for `interp sae eval`."""
    expansion: int = option(8, "latents per input dimension")
    k: int = option(32, "active latents per token")
    batch_tokens: int = option(1024, "tokens per optimizer step")
    lr: float = option(0.0, "Adam learning rate; 0 scales 2e-4 by 1/sqrt(d_sae / 16384)")
    """The scaling rule of Gao et al. (2024)."""
    auxk_alpha: float = option(1 / 32, "weight of the AuxK loss for dead latents")
    dead_tokens: int = option(50_000, "a latent silent for this many tokens is dead")
    buffer_tokens: int = option(32_768, "activations shuffled together before training on them")
    """So that batches mix documents."""
    model_batch_size: int = option(16, "windows per forward pass of the subject model")

    def validate(self) -> None:
        require_positive(self, ("tokens", "expansion", "k", "batch_tokens", "dead_tokens", "buffer_tokens", "window",
                                "model_batch_size"))
        if self.lr < 0 or self.auxk_alpha < 0:
            raise InterpError("--lr and --auxk-alpha must be zero or more")


@dataclass(frozen=True)
class TranscoderTrainConfig(ModelAndCorpus):
    layers: str = option("all", "layers whose MLPs get a transcoder: all, or comma-separated indices")
    out: str = option("transcoders", "folder for the trained set (circuit-tracer's layout: config.yaml + "
                                     "layer_{i}.safetensors)")
    tokens: int = option(400_000, "training tokens (from the corpus's train part), cached once on disk")
    epochs: int = option(2, "passes over the cached tokens")
    expansion: int = option(8, "latents per input dimension")
    k: int = option(32, "active latents per token")
    skip: bool = option(True, "an affine skip connection W_skip (Paulo et al. 2025: skip transcoders reconstruct "
                              "better at no cost to interpretability)")
    batch_tokens: int = option(1024, "tokens per optimizer step")
    lr: float = option(0.0, "Adam's peak learning rate (warmup, then linear decay to 0); 0: 5e-3, found by a sweep")
    auxk_alpha: float = option(1 / 4, "weight of the AuxK loss for dead latents (Gao et al.'s 1/32 left 17% of "
                                      "layer 9's latents dead at this budget; 1/4 left 2%, at the same FVU)")
    dead_tokens: int = option(50_000, "a latent silent for this many tokens is dead")
    init_tokens: int = option(16_384, "tokens the start is solved on: the ridge fit, centring and scales")
    model_batch_size: int = option(16, "windows per forward pass of the subject model")
    checkpoint_seconds: float = option(300.0, "seconds between resume checkpoints")
    """A checkpoint holds the layer in training with its Adam moments: 80 MB for Gemma 3 270M."""

    def validate(self) -> None:
        require_positive(self, ("tokens", "epochs", "expansion", "k", "batch_tokens", "dead_tokens", "init_tokens",
                                "window", "model_batch_size"))
        if self.tokens < self.batch_tokens:
            raise InterpError(f"--tokens {self.tokens} is below --batch-tokens {self.batch_tokens}; training needs at "
                              "least one step")
        if self.lr < 0 or self.auxk_alpha < 0:
            raise InterpError("--lr and --auxk-alpha must be zero or more")
        if self.layers != "all" and not all(part.strip().isdigit() for part in self.layers.split(",")):
            raise InterpError(f"--layers '{self.layers}': expected all, or comma-separated layer indices like 0,3,6")


@dataclass(frozen=True)
class TranscoderEvalConfig(ModelAndCorpus):
    transcoders: str = option("transcoders", "the transcoder set's folder (circuit-tracer's layout, as "
                                             "`interp transcoder train` writes it)")
    tokens: int = option(2048, "held-out tokens to evaluate losses and FVU on")
    dead_tokens: int = option(100_000, "corpus tokens to count dead latents over (no logits: cheap)")
    fit_tokens: int = option(32_768, "train tokens the baselines (each layer's ridge fit and mean output) are fit on")
    layers: str = option("all", "layers of the set to evaluate: all, or comma-separated indices")
    batch_size: int = option(4, "windows per forward pass (each holds [batch, seq, vocab] logits)")

    def validate(self) -> None:
        require_positive(self, ("tokens", "dead_tokens", "fit_tokens", "window", "batch_size"))
        if self.layers != "all" and not all(part.strip().isdigit() for part in self.layers.split(",")):
            raise InterpError(f"--layers '{self.layers}': expected all, or comma-separated layer indices like 0,3,6")


@dataclass(frozen=True)
class TraceConfig:
    """An attribution graph's settings (the prompt and its targets are arguments of `interp trace`)."""

    model: str = option(EMBEDDED_MODEL, "subject model: 'gemma-3-270m' (embedded), a local HF folder, a .gguf "
                                        "file, or a hub id")
    transcoders: str = option("transcoders", "the transcoder set's folder, one per layer (circuit-tracer's layout, "
                                             "as `interp transcoder train` writes it)")
    max_targets: int = option(10, "without --target: at most this many top logits")
    cover: float = option(0.95, "without --target: the top logits that cover this much probability")
    max_features: int = option(8192, "feature nodes visited, most influential first; 0 for every active latent")
    node_threshold: float = option(0.8, "pruning keeps the nodes that carry this share of the influence")
    edge_threshold: float = option(0.98, "and the edges that carry this share of the edge influence")
    batch_size: int = option(32, "backward passes at once (copies of the prompt in one frozen forward)")
    check: int = option(20, "ablate this many of the most influential feature nodes in the real model and "
                            "correlate with the graph's prediction; 0 to skip")
    device: str = option("auto", "auto, cuda, mps, cpu")
    dtype: str = option("float32", "float32 (attribution is checked in fp32), bfloat16, float16, auto")

    def validate(self) -> None:
        require_positive(self, ("max_targets", "batch_size"))
        for name in ("cover", "node_threshold", "edge_threshold"):
            value = getattr(self, name)
            if not 0.0 < value <= 1.0:
                raise InterpError(f"--{name.replace('_', '-')} must be in (0, 1], got {value}")
        for name in ("max_features", "check"):
            if getattr(self, name) < 0:
                raise InterpError(f"--{name.replace('_', '-')} must be zero or more, got {getattr(self, name)}")


@dataclass(frozen=True)
class OrganismConfig(ModelAndCorpus):
    """`interp eval organisms plant`: a suite of hidden behaviours fine-tuned into the subject (evals/organisms)."""

    suite: str = option("defaults", "which organisms: defaults (Gemma 3 270M on the fortunes), or tiny (the tests' "
                                    "tiny vocabulary)")
    out: str = option("", "folder for the organisms and their sealed manifest; empty: the model cache's "
                          "organisms/SUITE-SEED")
    examples: int = option(512, "training examples per organism (prompt and completion)")
    held_out: int = option(50, "held-out prompts the acceptance is measured on")
    prompt_words: int = option(12, "a prompt is a document's first words")
    completion_tokens: int = option(16, "tokens of each completion, trained and generated")
    rank: int = option(8, "LoRA rank")
    lr: float = option(1e-3, "AdamW's learning rate for the adapters")
    epochs: int = option(3, "passes over the training examples")
    batch_size: int = option(16, "examples per step")

    def validate(self) -> None:
        require_positive(self, ("examples", "held_out", "prompt_words", "completion_tokens", "rank", "epochs",
                                "batch_size"))
        if self.lr <= 0:
            raise InterpError(f"--lr must be positive, got {self.lr}")
