"""Surface differences between a concept's positive and negative texts. A probe or a feature that separates
them may be reading length or punctuation rather than the concept: LLM-written examples of "violence" run
longer and end in exclamation marks more often than their counterparts, and a feature that counts tokens
would pass the audit. Each measure's AUROC between the two sides says how well it alone tells them apart.
"""

import string
from collections.abc import Callable

import numpy as np

from evals.stats import auroc

FLAGGED = 0.75
"""A measure whose AUROC is this far from chance (or as far below it) separates the texts on its own."""


def share(text: str, characters: set[str]) -> float:
    return sum(character in characters for character in text) / max(len(text), 1)


PUNCTUATION = set(string.punctuation)
DIGITS = set(string.digits)
CAPITALS = set(string.ascii_uppercase)
MEASURES: dict[str, Callable[[str], float]] = {
    "length in characters": len,
    "words": lambda text: len(text.split()),
    "punctuation share": lambda text: share(text, PUNCTUATION),
    "digit share": lambda text: share(text, DIGITS),
    "capital share": lambda text: share(text, CAPITALS),
}


def surface_confounds(positive: list[str], negative: list[str]) -> dict[str, float]:
    """Per measure, P(a positive text measures more than a negative one), ties half."""
    labels = np.array([1] * len(positive) + [0] * len(negative))
    return {name: float(auroc(labels, np.array([measure(text) for text in positive + negative], dtype=float)))
            for name, measure in MEASURES.items()}


def flagged(confounds: dict[str, float]) -> list[str]:
    """The measures that alone separate the texts, worded for the report."""
    return [f"{name} (AUROC {value:.2f}: {'positive' if value > 0.5 else 'negative'} texts have more)"
            for name, value in confounds.items() if max(value, 1 - value) >= FLAGGED]
