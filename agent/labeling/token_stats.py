"""Which tokens and bigrams a feature fires on more than the corpus would predict.

The non-LLM baseline explainer is built on this, and the evidence explainer hands it to the LLM. A
token's weight is its share of the feature's activating positions times the log of how much more often
it appears there than in the corpus (its term of the KL divergence), so one rare token seen once does
not outrank a token seen at every activating position.
"""

import math
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass

from evals.records import ActivationRecord, active_positions


@dataclass(frozen=True)
class Enriched:
    text: str
    """A token, or two tokens joined (a bigram ending at the activating token)."""
    count: int
    """Times seen at activating positions."""
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


def most_enriched(observed: Counter, corpus: Counter, top: int) -> list[Enriched]:
    total_observed = sum(observed.values())
    total_corpus = sum(corpus.values())
    if total_observed == 0:
        return []
    vocabulary = len(corpus) + len(observed)
    ranked = []
    for text, count in observed.items():
        share = count / total_observed
        # Add-one smoothing: a token the corpus sample never showed is rare, not impossible.
        corpus_share = (corpus[text] + 1) / (total_corpus + vocabulary)
        ratio = share / corpus_share
        if ratio > 1:
            ranked.append((share * math.log(ratio), Enriched(text, count, ratio)))
    ranked.sort(key=lambda pair: (-pair[0], pair[1].text))
    return [item for _, item in ranked[:top]]


@dataclass(frozen=True)
class TokenStatistics:
    tokens: list[Enriched]
    bigrams: list[Enriched]


def token_statistics(records: list[ActivationRecord], corpus: CorpusCounts, top: int = 5) -> TokenStatistics:
    tokens: Counter[str] = Counter()
    bigrams: Counter[str] = Counter()  # two tokens' text, joined
    for record in records:
        for position in active_positions(record):
            tokens[record.tokens[position]] += 1
            if position > 0:
                bigrams[record.tokens[position - 1] + record.tokens[position]] += 1
    return TokenStatistics(most_enriched(tokens, corpus.tokens, top), most_enriched(bigrams, corpus.bigrams, top))
