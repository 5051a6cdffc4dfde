"""How labeling runs are configured: explainer, scorers, LLMs, which features, how many examples.

Each field's help is the command line's help for its flag (agent.cli builds the flags from the fields).
"""

import dataclasses
import math

from tools.configs import option, require_positive
from tools.errors import InterpError
from tools.llm.urls import public_url

EXPLAINERS = ("oneshot", "evidence", "output", "both", "token-stats")
SCORERS = ("simulation", "detection", "fuzzing", "embedding", "intervention", "intruder")
MAX_CONCURRENCY = 256
REQUESTS_PER_RUN = 64
"""A feature's judge calls go out together, as many as keep about this many requests in flight in all."""


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    explainer: str = option("oneshot", "oneshot (LLM over marked examples), evidence (oneshot + token statistics + "
                                       "output effect), output (what it makes the model say: logit effect and "
                                       "steered continuations), both (oneshot + output), token-stats (no LLM)")
    scorers: str = option("simulation,detection,embedding",
                          "comma-separated: simulation, detection, fuzzing, embedding, intervention (a judge picks "
                          "the continuation the feature steered), intruder (a judge picks the excerpt where the "
                          "feature does not fire; scores the feature, not the label); empty for none")
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
    concurrency: int = option(0, f"features in flight at once, up to {MAX_CONCURRENCY}; 0: 1 with a local LLM, 8 "
                                 "with an endpoint")
    """A local LLM runs one forward at a time: more in flight would only delay every result."""
    judge_batch: int = option(0, "excerpts per judge prompt for detection and fuzzing; 0: 1 with a local LLM (a small "
                                 "model keeps one excerpt straight, not a list), 10 with an endpoint")
    n_top: int = option(10, "top examples shown to the explainer")
    n_quantile: int = option(5, "quantile samples shown to the explainer")
    score_active: int = option(10, "held-out activating examples per scorer")
    score_random: int = option(10, "held-out random examples per scorer")
    embedder: str = option("all-MiniLM-L6-v2", "sentence-transformers model (name or folder) for embeddings and the "
                                               "embedding scorer")
    score_only: str = option("", "score the explanations this explainer already wrote (like neuronpedia:TYPE, from "
                                 "`interp import neuronpedia`) and explain nothing; the features are the ones it "
                                 "explained")
    device: str = option("auto", "auto, cuda, mps, cpu")
    price_per_mtok: str = option("", "IN,OUT: dollars per million prompt and completion tokens, to print the cost")

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

    def effective_judge_batch(self) -> int:
        if self.judge_batch:
            return self.judge_batch
        return 1 if self.llm_is_local else 10

    def judge_parallel(self) -> int:
        """Judge calls of one feature sent at once: many when few features are in flight, one when many are."""
        return max(1, min(16, REQUESTS_PER_RUN // self.effective_concurrency()))

    def requests_in_flight(self) -> int:
        """What an endpoint backend lets out at once: every feature in flight with all its judge calls."""
        return self.effective_concurrency() * self.judge_parallel()

    def prices(self) -> tuple[float, float] | None:
        """(prompt, completion) dollars per million tokens, or None when no price was given."""
        if not self.price_per_mtok:
            return None
        try:
            prompt, completion = (float(part) for part in self.price_per_mtok.split(","))
        except ValueError:
            raise InterpError(f"--price-per-mtok must be IN,OUT dollars per million tokens, e.g. 0.15,0.6; got "
                              f"'{self.price_per_mtok}'") from None
        if prompt < 0 or completion < 0 or not all(map(math.isfinite, (prompt, completion))):
            raise InterpError(f"--price-per-mtok must be two non-negative numbers, got '{self.price_per_mtok}'")
        return prompt, completion

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
        for name in ("limit", "concurrency", "max_retries", "n_quantile", "score_random", "judge_batch"):
            if getattr(self, name) < 0:
                raise InterpError(f"--{name.replace('_', '-')} must be zero or more, got {getattr(self, name)}")
        if self.concurrency > MAX_CONCURRENCY:
            raise InterpError(f"--concurrency must be at most {MAX_CONCURRENCY}, got {self.concurrency}")
        self.prices()
        if any(feature < 0 for feature in self.feature_list()):
            raise InterpError(f"--features must be non-negative, got '{self.features}'")
