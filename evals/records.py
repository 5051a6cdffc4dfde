"""Activation records, the currency between the catalog, explainers and scorers.

`{tokens, values}` is the record format of OpenAI's neuron-explainer, delphi and Neuronpedia; a
`FeatureRecord` holds one feature's records already split, so an explainer is handed only
`explain` and can never see the records that score it.
"""

import functools
import itertools
import re
from collections.abc import Collection
from dataclasses import dataclass, field

from tools.text import visible

NEGATIVE_FRACTION = 0.25
"""A random window counts as a negative (non-activating) example when its peak is below this fraction
of the feature's maximum. MLP neurons are dense (Gemma 3 270M mlp.6: some token above 0 in 99.6% of
windows), so "never fires" would leave no negatives; below a quarter of the max leaves 3+ of 20 random
windows for 86% of those neurons, while sparse SAE latents keep their many exact zeros."""


@dataclass(frozen=True)
class ActivationRecord:
    tokens: list[str]
    values: list[float]

    def __post_init__(self):
        if len(self.tokens) != len(self.values):
            raise ValueError(f"a record needs one value per token, got {len(self.tokens)} tokens and "
                             f"{len(self.values)} values")

    @property
    def max_value(self) -> float:
        return max(self.values, default=0.0)

    @property
    def text(self) -> str:
        return "".join(self.tokens)


@dataclass(frozen=True)
class FeatureRecord:
    feature: int
    max_act: float
    """The feature's maximum over the whole cached corpus: the scale for 0-10 activation levels."""
    explain_top: list[ActivationRecord]
    """Top examples of the explain split, strongest first. Explainers see only the explain split."""
    explain_quantile: list[ActivationRecord] = field(default_factory=list)
    """Examples sampled across the activation quantiles (explain split), strongest first."""
    score_active: list[ActivationRecord] = field(default_factory=list)
    """Top and quantile examples of the score split: the positives."""
    score_random: list[ActivationRecord] = field(default_factory=list)
    """Random windows of the score split, active or not."""

    @property
    def score_negatives(self) -> list[ActivationRecord]:
        return [r for r in self.score_random if r.max_value < NEGATIVE_FRACTION * self.max_act]

    @property
    def explain(self) -> list[ActivationRecord]:
        return self.explain_top + self.explain_quantile


def record_from_example(example: dict, special_ids: Collection[int]) -> ActivationRecord:
    """A catalog example as a record, without special tokens (BOS, document separators)."""
    kept = [i for i, token_id in enumerate(example["token_ids"]) if token_id not in special_ids]
    return ActivationRecord([example["tokens"][i] for i in kept], [float(example["acts"][i]) for i in kept])


def spread(records: list[ActivationRecord], n: int) -> list[ActivationRecord]:
    """n records evenly spaced through the list (strongest to weakest), not just its head."""
    if len(records) <= n:
        return list(records)
    return [records[round(i * (len(records) - 1) / max(n - 1, 1))] for i in range(n)]


def feature_record(feature: int, max_act: float | None, examples: list[dict], special_ids: Collection[int],
                   score_active: int = 10, score_random: int = 10) -> FeatureRecord:
    """Splits a feature's catalog examples (from Catalog.examples) into what explains and what scores.

    The held-out activating examples are half top examples and half quantile samples spread across the
    activation range, so a score rewards explaining the whole feature, not only its peak."""
    buckets: dict[tuple[str, str], list[ActivationRecord]] = {}
    # Random windows keep their sampled order: sorting them by activation would bias the negatives.
    for example in sorted(examples, key=lambda e: 0.0 if e["bucket"] == "random" else -e["max_act"]):
        buckets.setdefault((example["split"], example["bucket"]), []).append(record_from_example(example, special_ids))
    held_out_top = buckets.get(("score", "top"), [])[:(score_active + 1) // 2]
    held_out_quantile = spread(buckets.get(("score", "quantile"), []), score_active - len(held_out_top))
    return FeatureRecord(feature, float(max_act or 0.0), buckets.get(("explain", "top"), []),
                         buckets.get(("explain", "quantile"), []), held_out_top + held_out_quantile,
                         buckets.get(("score", "random"), [])[:score_random])


MARK_FRACTION = 0.5
"""Tokens at or above this fraction of their record's peak are the ones marked as activating."""

DELIMITER_NAMES = ("example", "continuation", "tool_result", "text", "measurements", "start", "end")
"""Every tag that our prompts and tool results wrap untrusted text in (a test holds prompts/ to this list)."""
DELIMITER = "(?:" + "|".join(DELIMITER_NAMES) + r")\b"
CLOSERS = re.compile(r"<{2,}|>{2,}|<(?=\s*/?\s*" + DELIMITER + ")", re.IGNORECASE)
"""What in untrusted text could open or close our <<marks>>, or open or close one of our delimiters."""
NEUTRAL = str.maketrans({"<": "‹", ">": "›"})
CLOSING_AFTER_MARK = re.compile(r"\A(\s*)/(?=\s*" + DELIMITER + ")", re.IGNORECASE)
"""A marked token that would make a closing tag with the `<` of our own `<<`: its slash is shown as ⁄."""


def neutralized(text: str) -> str:
    """`text` with only the sequences in CLOSERS defused (their angle brackets shown as ‹ ›).

    Everything else stays as it is, so an HTML tag reaches the LLM, its explanations and the catalog as
    `<html>`: an explanation can only quote a token it was shown."""
    return CLOSERS.sub(lambda match: match.group().translate(NEUTRAL), text)


@functools.lru_cache(maxsize=1 << 16)
def display_token(token: str) -> str:
    """A token as shown to an LLM: corpus text is untrusted, so it can never close our <<marks>> or
    <example> delimiters, and line breaks and other controls cannot break a one-token-per-line layout.
    Cached: a labeling run shows the same vocabulary's tokens ~1,500 times a feature."""
    return neutralized(visible(token))


def active_positions(record: ActivationRecord) -> list[int]:
    peak = record.max_value
    return [i for i, v in enumerate(record.values) if v > 0 and v >= MARK_FRACTION * peak]


def marked_text(record: ActivationRecord, positions: Collection[int]) -> str:
    """The record's text with the tokens at `positions` marked <<like this>>, as delphi shows them.

    Each run of unmarked tokens is defused as one text, so two tokens cannot together make a sequence
    (`<` then `/example`) that neither makes alone. A marked token sits between our own marks, and a slash
    that would make a closing tag with their `<` is shown as ⁄."""
    pieces: list[str] = []
    for marked, run in itertools.groupby(enumerate(record.tokens), key=lambda item: item[0] in positions):
        if marked:
            pieces.extend("<<" + CLOSING_AFTER_MARK.sub("\\1⁄", display_token(token)) + ">>" for _, token in run)
        else:
            pieces.append(neutralized(visible("".join(token for _, token in run))))
    return "".join(pieces)


def activation_level(value: float, max_act: float, top: int = 10) -> int:
    """An activation on the 0..top scale that neuron-explainer uses, relative to the feature's max."""
    if max_act <= 0:
        return 0
    return int(round(min(max(value / max_act, 0.0), 1.0) * top))
