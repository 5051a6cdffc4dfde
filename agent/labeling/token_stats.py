"""Which tokens and bigrams a feature fires on more than the corpus would predict.

The non-LLM baseline explainer is built on this, and the evidence explainer hands it to the LLM.

Positions are marked against the feature's own maximum over its examples, never each example's peak: a
dense MLP neuron fires weakly almost everywhere, and an example whose peak is small would otherwise mark
its weak tokens as if they were the feature's best. Each marked position counts by its activation
(relative to that maximum), and a token's weight is its share of that activation times the log of how
much more often it appears there than in the corpus (its term of the KL divergence), so one rare token
seen once does not outrank a token seen at every activating position. The list opens with the token
that the very top of the distribution fires on.
"""

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from evals.records import MARK_FRACTION, FeatureRecord

LEAD_FRACTION = 0.75
"""Positions at or above this fraction of the feature's maximum are the top of its distribution, whose
most enriched token leads the list."""


@dataclass(frozen=True)
class Enriched:
    text: str
    """A token, or two tokens joined (a bigram ending at the activating token)."""
    count: int
    """Times seen at activating positions."""
    weight: float
    """Its summed activation there, relative to the feature's maximum."""
    ratio: float
    """How many times more frequent at activating positions than in the corpus."""


@dataclass(frozen=True)
class CorpusCounts:
    """Token and bigram counts over a sample of the corpus (the feature set's random windows)."""

    tokens: Counter
    bigrams: Counter

    @classmethod
    def from_windows(cls, windows: Iterable[list[str]]) -> "CorpusCounts":
        tokens: Counter[str] = Counter()
        bigrams: Counter[str] = Counter()  # two tokens' text, joined
        for window in windows:
            tokens.update(window)
            bigrams.update(a + b for a, b in zip(window, window[1:], strict=False))
        return cls(tokens, bigrams)


def most_enriched(weights: Mapping[str, float], counts: Counter, corpus: Counter) -> list[Enriched]:
    """Every observed text the corpus makes rarer than the feature does, most enriched first."""
    total_weight = sum(weights.values())
    total_corpus = sum(corpus.values())
    if total_weight <= 0:
        return []
    vocabulary = len(corpus) + len(weights)
    ranked = []
    for text, weight in weights.items():
        share = weight / total_weight
        # Add-one smoothing: a token the corpus sample never showed is rare, not impossible.
        corpus_share = (corpus[text] + 1) / (total_corpus + vocabulary)
        ratio = share / corpus_share
        if ratio > 1:
            ranked.append((share * math.log(ratio), Enriched(text, counts[text], weight=weight, ratio=ratio)))
    ranked.sort(key=lambda pair: (-pair[0], pair[1].text))
    return [item for _, item in ranked]


@dataclass(frozen=True)
class TokenStatistics:
    tokens: list[Enriched]
    """The token the top of the distribution fires on first, then the most enriched."""
    bigrams: list[Enriched]
    """Two-token sequences ending at a marked position; those ending in the leading token first."""


class Marked:
    """Activation-weighted counts of what sits at a feature's marked positions."""

    def __init__(self) -> None:
        self.weights: defaultdict[str, float] = defaultdict(float)
        self.counts: Counter[str] = Counter()

    def add(self, text: str, weight: float) -> None:
        self.weights[text] += weight
        self.counts[text] += 1


def token_statistics(record: FeatureRecord, corpus: CorpusCounts, top: int = 5) -> TokenStatistics:
    """Statistics of the feature's explain examples (never the held-out ones that score it)."""
    records = record.explain
    scale = max((r.max_value for r in records), default=0.0)
    tokens, bigrams, lead = Marked(), Marked(), Marked()
    for example in records:
        for position, value in enumerate(example.values):
            if value <= 0 or value < MARK_FRACTION * scale:
                continue
            token, weight = example.tokens[position], value / scale
            tokens.add(token, weight)
            if value >= LEAD_FRACTION * scale:
                lead.add(token, weight)
            if position > 0:
                bigrams.add(example.tokens[position - 1] + token, weight)
    ranked = most_enriched(tokens.weights, tokens.counts, corpus.tokens)
    leading = most_enriched(lead.weights, lead.counts, corpus.tokens)[:1]
    if leading:
        first = next((item for item in ranked if item.text == leading[0].text), leading[0])
        ranked = [first] + [item for item in ranked if item.text != first.text]
    ranked_bigrams = most_enriched(bigrams.weights, bigrams.counts, corpus.bigrams)
    if ranked:
        ranked_bigrams.sort(key=lambda item: not item.text.endswith(ranked[0].text))  # stable: keeps the order
    return TokenStatistics(ranked[:top], ranked_bigrams[:top])
