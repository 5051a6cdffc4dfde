"""Run configurations: printed at the start of a run and stored with its results.

Kept apart from the code that runs them so the CLI can build its flags without importing torch.
"""

import dataclasses
import hashlib
import json
from dataclasses import dataclass

from tools.defaults import EMBEDDED_CORPUS, EMBEDDED_MODEL
from tools.errors import InterpError

DEFAULT_HOOK = "mlp.6"


def require_positive(config, names: tuple[str, ...]) -> None:
    """A one-line error naming the flag, for the first of `names` that is zero or negative."""
    for name in names:
        value = getattr(config, name)
        if value <= 0:
            raise InterpError(f"--{name.replace('_', '-')} must be positive, got {value}")


@dataclass(frozen=True)
class ModelAndCorpus:
    """What every run that reads the subject model on a corpus names; the run configs extend it."""

    model: str = EMBEDDED_MODEL
    """Embedded model name, local HF folder, .gguf file, or hub id."""
    hook: str = ""
    """Hook point (see tools.hooks): mlp.L, resid_pre.L, resid_post.L, attn.L, or a TransformerLens name;
    empty means the SAE's own hook, or DEFAULT_HOOK without an SAE."""
    corpus: str = EMBEDDED_CORPUS
    """Corpus source (see tools.corpus)."""
    text_column: str = "text"
    window: int = 64
    """Tokens per window, BOS included."""
    bos: str = "auto"
    """Prepend BOS to every window: auto (when the tokenizer has one), always, never."""
    seed: int = 0
    device: str = "auto"
    dtype: str = "auto"


@dataclass(frozen=True)
class CacheConfig(ModelAndCorpus):
    sae: str = ""
    """An SAE file or folder (tools.sae_formats): cache its latents on the hook instead of the hook's own dimensions."""
    tokens: int = 200_000
    """Token budget: windows are taken until they hold this many tokens (or the corpus ends)."""
    batch_size: int = 16
    top_k: int = 50
    quantiles: int = 10
    per_quantile: int = 10
    random: int = 20
    """Random windows kept per feature as negatives."""
    threshold: float = 0.0
    """A token is active when its activation exceeds this."""
    histogram_bins: int = 64
    checkpoint_seconds: float = 30.0

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
    sae: str = ""
    """The SAE file or folder to evaluate."""
    tokens: int = 4096
    """Held-out tokens to evaluate on (documents the SAE trainer never sees; see tools.corpus)."""
    batch_size: int = 4

    def validate(self) -> None:
        if not self.sae:
            raise InterpError("--sae is required: the SAE file or folder to evaluate")
        require_positive(self, ("tokens", "window", "batch_size"))


@dataclass(frozen=True)
class TrainConfig(ModelAndCorpus):
    hook: str = "resid_post.6"
    """Where the SAE reads; the default is the middle of Gemma 3 270M's residual stream."""
    out: str = "sae-out"
    """Folder to write the trained SAE to, in SAELens format."""
    tokens: int = 300_000
    """Training tokens, from the corpus's train part (held-out documents are kept for `interp sae eval`)."""
    expansion: int = 8
    """Latents per input dimension."""
    k: int = 32
    """Active latents per token (TopK)."""
    batch_tokens: int = 1024
    lr: float = 0.0
    """Adam learning rate; 0 picks 2e-4 / sqrt(d_sae / 16384), the scaling rule of Gao et al. (2024)."""
    auxk_alpha: float = 1 / 32
    """Weight of the AuxK loss that revives dead latents."""
    dead_tokens: int = 50_000
    """A latent that has not fired for this many tokens counts as dead."""
    buffer_tokens: int = 32_768
    """Activations gathered and shuffled before training on them, so batches mix documents."""
    model_batch_size: int = 16

    def validate(self) -> None:
        require_positive(self, ("tokens", "expansion", "k", "batch_tokens", "dead_tokens", "buffer_tokens", "window",
                                "model_batch_size"))
        if self.lr < 0 or self.auxk_alpha < 0:
            raise InterpError("--lr and --auxk-alpha must be zero or more")


EXPLAINERS = ("oneshot", "evidence", "token-stats")
SCORERS = ("simulation", "detection", "fuzzing", "embedding")


@dataclass(frozen=True)
class LabelConfig:
    explainer: str = "oneshot"
    """oneshot (LLM over marked examples), evidence (oneshot plus token statistics and output effect),
    token-stats (no LLM)."""
    scorers: str = "simulation,detection,embedding"
    """Comma-separated: simulation, detection, fuzzing, embedding; empty for none."""
    llm: str = "local"
    """local (the embedded SmolLM2-135M-Instruct), local:PATH (HF folder or .gguf), or openai:MODEL."""
    simulator: str = ""
    """LLM for simulation, which needs token probabilities: empty means --llm when it is local, else local."""
    base_url: str = ""
    """OpenAI-compatible endpoint for openai:MODEL; empty means api.openai.com."""
    api_key_env: str = "OPENAI_API_KEY"
    """Environment variable holding the endpoint's API key (never stored)."""
    timeout: float = 60.0
    max_retries: int = 4
    """Retries with exponential backoff on 429, 5xx and dropped connections."""
    limit: int = 0
    """Label the first N live features (index order); 0 for all."""
    features: str = ""
    """Comma-separated feature indices to label instead of the first --limit."""
    concurrency: int = 0
    """Features in flight at once; 0 picks 1 for a local LLM (one model, one forward at a time: more in flight
    would only delay every result) and 8 for an endpoint."""
    n_top: int = 10
    """Top examples shown to the explainer."""
    n_quantile: int = 5
    """Quantile samples shown to the explainer."""
    score_active: int = 10
    """Held-out activating examples per scorer."""
    score_random: int = 10
    """Held-out random examples per scorer."""
    embedder: str = "all-MiniLM-L6-v2"
    """Sentence-transformers model for explanation embeddings and the embedding scorer (name or folder)."""
    device: str = "auto"

    @property
    def llm_is_local(self) -> bool:
        return self.llm.startswith("local")

    def effective_concurrency(self) -> int:
        if self.concurrency:
            return self.concurrency
        return 1 if self.llm_is_local else 8

    def scorer_names(self) -> list[str]:
        return [name.strip() for name in self.scorers.split(",") if name.strip()]

    def feature_list(self) -> list[int]:
        try:
            return [int(item) for item in self.features.split(",") if item.strip()]
        except ValueError:
            raise InterpError(f"--features must be comma-separated integers, got '{self.features}'") from None

    def validate(self) -> None:
        if self.explainer not in EXPLAINERS:
            raise InterpError(f"unknown explainer '{self.explainer}'; expected one of {', '.join(EXPLAINERS)}")
        for name in self.scorer_names():
            if name not in SCORERS:
                raise InterpError(f"unknown scorer '{name}'; expected some of {', '.join(SCORERS)}")
        require_positive(self, ("timeout", "n_top", "score_active"))
        for name in ("limit", "concurrency", "max_retries", "n_quantile", "score_random"):
            if getattr(self, name) < 0:
                raise InterpError(f"--{name.replace('_', '-')} must be zero or more, got {getattr(self, name)}")
        if any(feature < 0 for feature in self.feature_list()):
            raise InterpError(f"--features must be non-negative, got '{self.features}'")
