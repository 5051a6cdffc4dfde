"""Simulation scoring, all at once (Bills et al. 2023): a simulator model reads the explanation and, in one
forward pass over a prompt that lists the tokens, predicts every token's activation; the score is the
Pearson correlation of its predictions with the true activations, pooled over held-out examples.

At each token slot the simulator's next-token distribution over the labels "0".."10" is renormalized
and its expected value is the prediction. Tokenizers that split "10" into two tokens (Gemma, Qwen,
SmolLM2) get the scale "0".."9"; the scale used is kept in the score's details.
"""

import numpy as np

from evals.records import ActivationRecord, FeatureRecord, display_token
from evals.scorers.base import Score, ScoreError, ScorerResult
from evals.stats import bootstrap_interval, moments, pooled_pearson
from prompts import Prompt, load_prompt
from tools.llm.interface import SlotLLM, Usage, slot_probabilities_all

SLOT_PLACEHOLDER = "?"
"""Marks a level to predict. Not a word: Llama 3's and Qwen's tokenizers join a tab with the letters after
it ("\tunknown" is one piece), which would leave an endpoint's slot without a distribution of its own."""


class AllAtOnceSimulator:
    def __init__(self, llm: SlotLLM, prompt: Prompt | None = None):
        if not isinstance(llm, SlotLLM):
            raise ScoreError(f"simulation needs token probabilities, which {llm.name} does not give; use a local "
                             "LLM (--simulator local or local:PATH) or another scorer")
        self.llm = llm
        self.prompt = prompt or load_prompt("simulate")
        labels = [str(i) for i in range(11)]
        self.labels = labels if llm.single_token_labels(labels) else labels[:10]
        if not llm.single_token_labels(self.labels):
            raise ScoreError(f"the digits 0-9 are not single tokens for {llm.name}; it cannot simulate")

    def prompt_parts(self, explanation: str, tokens: list[str]) -> tuple[str, list[str]]:
        """The prefix (instructions, worked example, explanation: the same for all of a feature's examples)
        and the listing cut at each slot, which follows each token's tab."""
        return self.prefix(explanation), self.listing(tokens)

    def prefix(self, explanation: str) -> str:
        return self.prompt.render(explanation=" ".join(explanation.split()), scale_max=self.labels[-1])

    @staticmethod
    def listing(tokens: list[str]) -> list[str]:
        shown = [display_token(token) for token in tokens]
        parts = [f"{shown[0]}\t"] + [f"{SLOT_PLACEHOLDER}\n{token}\t" for token in shown[1:]]
        parts.append(f"{SLOT_PLACEHOLDER}\n<end>")
        return parts

    def simulate(self, explanation: str, tokens: list[str]) -> tuple[np.ndarray, Usage]:
        """Expected activation level per token [n_tokens], on the 0..scale_max scale."""
        predicted, usage, _ = self.simulate_all(explanation, [tokens])
        return predicted[0], usage

    def simulate_all(self, explanation: str, examples: list[list[str]]) -> tuple[list[np.ndarray], Usage, int]:
        """Expected levels for every example, in as few requests as the backend allows; also how many label
        probabilities an endpoint's top-k left out (filled with an even share of the unlisted mass)."""
        results = slot_probabilities_all(self.llm, self.prefix(explanation),
                                         [self.listing(tokens) for tokens in examples], self.labels)
        levels = np.arange(len(self.labels), dtype=np.float64)
        usage = sum((r.usage for r in results), Usage())
        return [r.probabilities @ levels for r in results], usage, sum(r.missing_labels for r in results)


class SimulationScorer:
    name = "simulation"

    def __init__(self, simulator: AllAtOnceSimulator, resamples: int = 1000):
        self.simulator = simulator
        self.llm_name = simulator.llm.name
        self.prompt_hash = simulator.prompt.sha256
        self.resamples = resamples

    def score(self, explanation: str, record: FeatureRecord) -> ScorerResult:
        records: list[ActivationRecord] = [r for r in record.score_active + record.score_random if r.tokens]
        if not records:
            raise ScoreError("no held-out examples to simulate")
        predicted, usage, missing = self.simulator.simulate_all(explanation, [r.tokens for r in records])
        by_example = np.stack([moments(r.values, p) for r, p in zip(records, predicted, strict=True)])

        def pooled(weights: np.ndarray) -> np.ndarray:
            return pooled_pearson(by_example, weights)

        low, high = bootstrap_interval(pooled, len(records), self.resamples)
        tokens = int(by_example[:, 0].sum())
        details = {"tokens": tokens, "scale_max": int(self.simulator.labels[-1]),
                   "active_examples": len(record.score_active), "random_examples": len(record.score_random),
                   "simulator": self.llm_name,
                   # the share of label probabilities an endpoint's top-k did not list (0 for a local model)
                   "labels_missing_from_top_k": round(missing / max(1, tokens * len(self.simulator.labels)), 4)}
        value = float(pooled(np.ones((1, len(records))))[0])
        return ScorerResult([Score(self.name, "pearson", value, len(records), low, high, details)], usage)
