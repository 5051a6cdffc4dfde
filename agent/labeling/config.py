"""How labeling runs are configured: explainer, scorers, LLMs, which features, how many examples.

Each field's help is the command line's help for its flag (agent.cli builds the flags from the fields).
"""

import dataclasses

from tools.configs import option, require_positive
from tools.errors import InterpError
from tools.llm.urls import public_url

EXPLAINERS = ("oneshot", "evidence", "token-stats")
SCORERS = ("simulation", "detection", "fuzzing", "embedding")


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    explainer: str = option("oneshot", "oneshot (LLM over marked examples), evidence (oneshot + token statistics + "
                                       "output effect), token-stats (no LLM)")
    scorers: str = option("simulation,detection,embedding",
                          "comma-separated: simulation, detection, fuzzing, embedding; empty for none")
    llm: str = option("local", "local (embedded SmolLM2-135M-Instruct), local:PATH (HF folder or .gguf), openai:MODEL")
    simulator: str = option("", "LLM for simulation (needs token probabilities); empty: --llm (an endpoint simulates "
                                "from its prompt log-probabilities)")
    base_url: str = option("", "OpenAI-compatible endpoint for openai:MODEL; empty: api.openai.com")
    api_key_env: str = option("OPENAI_API_KEY", "environment variable holding the endpoint's API key (never stored)")
    timeout: float = option(60.0, "seconds per LLM request")
    max_retries: int = option(4, "retries with backoff on 429, 5xx and dropped connections")
    limit: int = option(0, "label the first N live features; 0 for all")
    """In index order."""
    features: str = option("", "comma-separated feature indices, instead of --limit")
    concurrency: int = option(0, "features in flight at once; 0: 1 with a local LLM, 8 with an endpoint")
    """A local LLM runs one forward at a time: more in flight would only delay every result."""
    n_top: int = option(10, "top examples shown to the explainer")
    n_quantile: int = option(5, "quantile samples shown to the explainer")
    score_active: int = option(10, "held-out activating examples per scorer")
    score_random: int = option(10, "held-out random examples per scorer")
    embedder: str = option("all-MiniLM-L6-v2", "sentence-transformers model (name or folder) for embeddings and the "
                                               "embedding scorer")
    device: str = option("auto", "auto, cuda, mps, cpu")

    def recorded(self) -> dict:
        """The config as runs store and print it: the endpoint without what may be a credential in its URL."""
        return dataclasses.asdict(self) | {"base_url": public_url(self.base_url)}

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
