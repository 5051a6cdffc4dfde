"""Reading an endpoint's log-probabilities: the prompt's tokens with each position's top-k, in either shape
OpenAI-compatible servers send them, and the distributions simulation and judges need from them.

An endpoint tokenizes the prompt itself, so where a simulator slot falls is found in its tokens, not
assumed: slots follow the tabs of the listing (corpus tabs are shown as visible symbols, so every raw tab
after the prompt's prefix ends a token line), and a slot can be read only where its tab ends a token.
"""

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


class MalformedLogprobs(ValueError):
    """The endpoint's log-probabilities are missing or not in a shape we know."""


@dataclass(frozen=True)
class PromptTokens:
    """A prompt as the endpoint tokenized it: parallel lists, not an object per token (a feature's answer
    holds ~12k tokens, and objects for each were a tenth of the client's time per feature)."""

    texts: list[str]
    tops: list[dict | None]
    """The top-k log-probabilities at each position (of its token given those before), by token text;
    None for the first token. As the endpoint sent them: a slot's values are checked when it is read,
    since checking the thousands of entries no slot reads was most of the client's time per feature."""


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedLogprobs(f"{where} is {type(value).__name__}, expected a number")
    return float(value)


def from_echo(choice: dict) -> PromptTokens:
    """The legacy shape (`echo: true` with `logprobs: k`): parallel lists `tokens` and `top_logprobs`."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, dict):
        raise MalformedLogprobs("the choice has no logprobs")
    tokens, tops = logprobs.get("tokens"), logprobs.get("top_logprobs")
    if not isinstance(tokens, list) or not isinstance(tops, list) or len(tokens) != len(tops):
        raise MalformedLogprobs("logprobs.tokens and logprobs.top_logprobs are not lists of one length")
    if not all(isinstance(token, str) for token in tokens) or \
            not all(top is None or isinstance(top, dict) for top in tops):
        raise MalformedLogprobs("logprobs entries are not tokens with dicts of log-probabilities")
    return PromptTokens(tokens, tops)


def from_prompt_logprobs(choice: dict) -> PromptTokens:
    """vLLM's shape: `prompt_logprobs` ([None, {token_id: {logprob, rank, decoded_token}}, ...]) and, with
    `return_token_ids`, `prompt_token_ids`, which say which entry is the prompt's own token."""
    entries, ids = choice.get("prompt_logprobs"), choice.get("prompt_token_ids")
    if not isinstance(entries, list) or not isinstance(ids, list) or len(entries) != len(ids) or not ids:
        raise MalformedLogprobs("the choice has no prompt_logprobs with prompt_token_ids of the same length")
    texts: list[str] = [""]  # the first token has no distribution; its text holds no tab
    tops: list[dict | None] = [None]
    for index, (entry, token_id) in enumerate(zip(entries, ids, strict=True)):
        if index == 0:
            continue
        if not isinstance(entry, dict) or not all(isinstance(v, dict) for v in entry.values()):
            raise MalformedLogprobs(f"prompt_logprobs[{index}] is not a dict of entries")
        own = entry.get(str(token_id))
        if own is None or not isinstance(own.get("decoded_token"), str):
            raise MalformedLogprobs(f"prompt_logprobs[{index}] lacks the prompt's own token {token_id}")
        top: dict[str, float] = {}
        for value in entry.values():
            text = value.get("decoded_token")
            if isinstance(text, str):
                top[text] = max(top.get(text, -math.inf), number(value.get("logprob"), f"prompt_logprobs[{index}]"))
        texts.append(own["decoded_token"])
        tops.append(top)
    return PromptTokens(texts, tops)


def slot_positions(tokens: PromptTokens, tabs_before: int, n_slots: int) -> list[int]:
    """The position whose distribution fills each slot: the token after the slot's tab. `tabs_before` tabs
    (the prompt's prefix) come first; the next `n_slots` tabs are the slots'. Raises when a tab does not
    end its token (the tokenizer joined it with what follows, so the slot has no distribution of its own)."""
    positions: list[int] = []
    seen = 0
    for index, text in enumerate(tokens.texts):
        if "\t" not in text:
            continue
        for offset, character in enumerate(text):
            if character != "\t":
                continue
            seen += 1
            if seen <= tabs_before or len(positions) == n_slots:
                continue
            if offset != len(text) - 1 or index + 1 >= len(tokens.texts):
                raise MalformedLogprobs(f"the endpoint's tokenizer joins slot {len(positions)}'s tab with what "
                                        f"follows ({text!r}); its distribution cannot be read")
            positions.append(index + 1)
    if len(positions) != n_slots:
        raise MalformedLogprobs(f"found {len(positions)} of {n_slots} slots in the endpoint's tokens")
    return positions


def label_distribution(top: dict | None, labels: list[str]) -> tuple[np.ndarray, int]:
    """The distribution over `labels` at one position, and how many labels the top-k left out. A label's
    mass is that of the top-k token that is exactly the label, as an in-process simulator reads the label's
    own token; labels missing from the top-k share what the top-k does not cover, evenly; the result is
    renormalized over the labels."""
    if top is None:
        raise MalformedLogprobs("a slot position has no log-probabilities")
    values = list(top.values())
    if not all(type(v) in (int, float) for v in values):  # bool is neither; NaN is refused below
        bad = next(v for v in values if type(v) not in (int, float))
        raise MalformedLogprobs(f"a log-probability is {type(bad).__name__}, expected a number")
    logprobs = np.minimum(np.asarray(values, dtype=np.float64), 0.0)
    if np.isnan(logprobs).any():
        raise MalformedLogprobs("a log-probability is not a number")
    listed = float(np.exp(logprobs).sum()) if len(values) else 0.0
    mass = np.array([math.exp(min(0.0, top[label])) if label in top else 0.0 for label in labels])
    missing = mass == 0
    if missing.any():
        mass[missing] = max(0.0, 1.0 - listed) / int(missing.sum())
    total = mass.sum()
    return (mass / total if total > 0 else np.full(len(labels), 1 / len(labels))), int(missing.sum())


def choice_distribution(top: dict[str, float], choices: list[str]) -> np.ndarray | None:
    """P(each choice) from a first answer token's top-k: a token counts for a choice when, stripped and
    lower-cased, it starts the choice ('Y' and ' yes' for 'Yes'); a token that starts two choices counts for
    none. None when no listed token starts any choice."""
    mass = np.zeros(len(choices))
    lowered = [choice.lower() for choice in choices]
    for text, logprob in top.items():
        word = text.strip().lower()
        matches = [i for i, choice in enumerate(lowered) if word and choice.startswith(word)]
        if len(matches) == 1:
            mass[matches[0]] += math.exp(logprob)
    return mass / mass.sum() if mass.sum() > 0 else None
