"""`interp label --dry-run`: the tokens (and, with a price, the dollars) labeling a feature set would take,
before anything is spent or written.

The run's own explainer and scorers build every prompt they would send, for a sample of the features
left to label, against a stand-in LLM that counts the prompt's tokens instead of answering. Tokens are
counted by the endpoint's own tokenizer where it offers vLLM's `/tokenize` (free: nothing is generated),
else at 4 characters a token, the usual rate of English for GPT, Llama and Qwen tokenizers, and the output
says which. Completion tokens are counted at their cap (the explainer's answer, the judge's, one token a
simulation request), so the estimate errs high.
"""

import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np

from agent.labeling.config import LabelConfig
from agent.labeling.pipeline import prepare
from agent.labeling.records import read_records
from agent.labeling.rows import label_feature
from tools.catalog import Catalog
from tools.llm.interface import ChoiceAnswer, Completion, SlotProbabilities, Usage

SAMPLE = 32
"""Features whose prompts are built and counted; the rest are estimated at their mean."""
CHARACTERS_PER_TOKEN = 4
TYPICAL_EXPLANATION = "the word paris and other names of European capital cities, mostly in travel writing"
"""What the judges' prompts are built around: about the length of a real explanation."""


class CountingLLM:
    """Stands in for every LLM of the run: answers the least that lets the pipeline go on and reports the
    tokens each call would have cost."""

    def __init__(self, name: str, count: Callable[[str], int]):
        self.name = name
        self.count = count

    def messages_tokens(self, messages: list[dict]) -> int:
        return sum(self.count(message["content"]) for message in messages)

    def chat(self, messages: list[dict], max_tokens: int) -> Completion:
        return Completion(TYPICAL_EXPLANATION, Usage(self.messages_tokens(messages), max_tokens))

    def choose(self, messages: list[dict], choices: list[str], max_tokens: int) -> ChoiceAnswer:
        return ChoiceAnswer(np.full(len(choices), 1 / len(choices)), "",
                            Usage(self.messages_tokens(messages), max_tokens))

    def choose_each(self, messages: list[dict], n: int, choices: list[str], max_tokens: int) -> ChoiceAnswer:
        """Judges that list several excerpts' answers in one prompt (what an endpoint gets by default)."""
        return ChoiceAnswer(np.full((n, len(choices)), 1 / len(choices)), "",
                            Usage(self.messages_tokens(messages), max_tokens))

    def single_token_labels(self, labels: list[str]) -> bool:
        return True

    def slot_probabilities(self, prefix: str, parts: list[str], labels: list[str]) -> SlotProbabilities:
        probabilities = np.full((len(parts) - 1, len(labels)), 1 / len(labels))
        return SlotProbabilities(probabilities, Usage(self.count(prefix + "".join(parts)), 1))


def token_counter(config: LabelConfig) -> tuple[Callable[[str], int], str]:
    """The endpoint's own count where it has vLLM's /tokenize, else 4 characters a token."""
    def estimate(text: str) -> int:
        return max(1, round(len(text) / CHARACTERS_PER_TOKEN))

    if not config.llm.startswith("openai:") or not config.base_url:
        return estimate, f"estimated at {CHARACTERS_PER_TOKEN} characters a token"
    root = config.base_url.rstrip("/").removesuffix("/v1")
    model = config.llm.partition(":")[2]
    client = httpx.Client(timeout=config.timeout)

    def tokenized(text: str) -> int:
        answer = client.post(f"{root}/tokenize", json={"model": model, "prompt": text, "add_special_tokens": False})
        answer.raise_for_status()
        count = answer.json().get("count")
        if not isinstance(count, int):
            raise ValueError("no count")
        return count

    try:
        tokenized("probe")
    except (httpx.HTTPError, ValueError):
        client.close()
        return estimate, f"estimated at {CHARACTERS_PER_TOKEN} characters a token (the endpoint has no /tokenize)"
    return tokenized, "counted by the endpoint's /tokenize"


@dataclass(frozen=True)
class CostEstimate:
    set_id: str
    features: int
    """Left to label (or to score) under this configuration."""
    sampled: int
    counted_how: str
    per_feature: dict[str, Usage]
    """Mean tokens per feature, by stage: 'explainer NAME' or 'scorer NAME'."""

    @property
    def total(self) -> Usage:
        mean = sum(self.per_feature.values(), Usage())
        return Usage(mean.prompt_tokens * self.features, mean.completion_tokens * self.features)


def estimate_label_cost(config: LabelConfig, feature_set_ref: str, catalog_path: Path,
                        sample: int = SAMPLE) -> CostEstimate:
    count, how = token_counter(config)
    counting = CountingLLM("dry-run", count)
    prepared = prepare(config, feature_set_ref, Path(catalog_path), llm_factory=lambda spec: counting)
    chosen = sorted(random.Random(0).sample(prepared.work, min(sample, len(prepared.work))),
                    key=lambda item: item.feature)
    sums: dict[str, Usage] = defaultdict(Usage)
    with Catalog(catalog_path, read_only=True) as catalog:
        records = list(zip(chosen, read_records(catalog, prepared.set_id, [item.feature for item in chosen],
                                                prepared.special, config.score_active, config.score_random),
                           strict=True))
    for item, record in records:
        outcome = label_feature(prepared.labeler, record, prepared.set_id, "dry-run", item.previous, item.scorers)
        if outcome.explanation is not None:
            row = outcome.explanation
            sums[f"explainer {row['explainer']}"] += Usage(row["prompt_tokens"], row["completion_tokens"])
        for score in outcome.scores:
            sums[f"scorer {score['scorer']}"] += Usage(score["prompt_tokens"], score["completion_tokens"])
    n = max(1, len(records))
    per_feature = {stage: Usage(round(usage.prompt_tokens / n), round(usage.completion_tokens / n))
                   for stage, usage in sums.items()}
    return CostEstimate(prepared.set_id, len(prepared.work), len(records), how, per_feature)
