"""Reading an endpoint's log-probabilities: the prompt's tokens with each position's top-k, in either shape
OpenAI-compatible servers send them, and the distributions simulation and judges need from them.

An endpoint tokenizes the prompt itself, so where a simulator slot falls is found in its tokens, not
assumed: slots follow the tabs of the listing (corpus tabs are shown as visible symbols, so every raw tab
after the prompt's prefix ends a token line), and a slot can be read only where its tab ends a token.
"""

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import repeat
from typing import Any, cast

import numpy as np
import simdjson


class MalformedLogprobs(ValueError):
    """The endpoint's log-probabilities are missing or not in a shape we know."""


@dataclass(frozen=True)
class PromptTokens:
    """A prompt as the endpoint tokenized it: parallel lists, not an object per token."""

    texts: list[str]
    tops: Sequence[dict | None]
    """The top-k log-probabilities at each position (of its token given those before), by token text;
    None for the first token. Read from the answer only where a slot asks (`EchoTops`, `VllmTops`)."""


class EchoTops(Sequence):
    """The legacy shape's `top_logprobs`, left in simdjson's parsed document and made into a dict only at
    the positions slots read. A feature's answer holds ~20 entries for each of ~6k prompt tokens, of which
    a few hundred are slots: building Python objects for all of them (and freeing them) was half the
    client's time per feature, and checking them all was more."""

    def __init__(self, array: simdjson.Array):
        self.array = array

    def __len__(self) -> int:
        return len(self.array)

    def __getitem__(self, index: Any) -> Any:
        value = self.array[index]
        if value is None:
            return None
        if not isinstance(value, simdjson.Object):
            raise MalformedLogprobs(f"top_logprobs[{index}] is {type(value).__name__}, expected an object")
        return value.as_dict()


class VllmTops(EchoTops):
    """vLLM's `prompt_logprobs` entries ({token_id: {logprob, rank, decoded_token}}) as {text: logprob}, made
    only where a slot reads them; two ids that decode alike keep the larger value."""

    def __getitem__(self, index: Any) -> Any:
        entry = super().__getitem__(index)
        if entry is None:
            return None
        top: dict[str, float] = {}
        for value in entry.values():
            text = value.get("decoded_token") if isinstance(value, dict) else None
            if isinstance(text, str):
                top[text] = max(top.get(text, -math.inf), number(value.get("logprob"), f"prompt_logprobs[{index}]"))
        return top


def number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise MalformedLogprobs(f"{where} is {type(value).__name__}, expected a number")
    return float(value)


def from_echo(choice: simdjson.Object) -> PromptTokens:
    """The legacy shape (`echo: true` with `logprobs: k`): parallel lists `tokens` and `top_logprobs`."""
    logprobs = choice.get("logprobs")
    if not isinstance(logprobs, simdjson.Object):
        raise MalformedLogprobs("the choice has no logprobs")
    tokens, tops = logprobs.get("tokens"), logprobs.get("top_logprobs")
    if not isinstance(tokens, simdjson.Array) or not isinstance(tops, simdjson.Array) or len(tokens) != len(tops):
        raise MalformedLogprobs("logprobs.tokens and logprobs.top_logprobs are not lists of one length")
    texts = tokens.as_list()
    if not set(map(type, texts)) <= {str}:  # in C: a feature's answer has ~11k tokens
        raise MalformedLogprobs("logprobs.tokens are not all strings")
    return PromptTokens(cast(list[str], texts), EchoTops(tops))


def from_prompt_logprobs(choice: simdjson.Object) -> PromptTokens:
    """vLLM's shape: `prompt_logprobs` ([None, {token_id: {logprob, rank, decoded_token}}, ...]) and, with
    `return_token_ids`, `prompt_token_ids`, which say which entry is the prompt's own token (its text)."""
    entries, ids = choice.get("prompt_logprobs"), choice.get("prompt_token_ids")
    if not isinstance(entries, simdjson.Array) or not isinstance(ids, simdjson.Array) or len(entries) != len(ids) \
            or not len(ids):
        raise MalformedLogprobs("the choice has no prompt_logprobs with prompt_token_ids of the same length")
    texts: list[str] = [""]  # the first token has no distribution; its text holds no tab
    for index, (entry, token_id) in enumerate(zip(entries, ids.as_list(), strict=True)):
        if index == 0:
            continue
        own = entry.get(str(token_id)) if isinstance(entry, simdjson.Object) else None
        text = own.get("decoded_token") if isinstance(own, simdjson.Object) else None
        if not isinstance(text, str):
            raise MalformedLogprobs(f"prompt_logprobs[{index}] lacks the prompt's own token {token_id}")
        texts.append(text)
    return PromptTokens(texts, VllmTops(entries))


def slot_positions(tokens: PromptTokens, tabs_before: int, n_slots: int) -> list[int]:
    """The position whose distribution fills each slot: the token after the slot's tab. `tabs_before` tabs
    (the prompt's prefix) come first; the next `n_slots` tabs are the slots'. Raises when a tab does not
    end its token (the tokenizer joined it with what follows, so the slot has no distribution of its own)."""
    positions: list[int] = []
    seen = 0
    with_tabs = [index for index, text in enumerate(tokens.texts) if "\t" in text]  # one pass in C-level calls
    for index in with_tabs:
        text = tokens.texts[index]
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


def label_distributions(tops: list[dict | None], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The distribution over `labels` at each of several positions ([positions, labels]), and how many
    labels the top-k left out at each position ([positions]). A label's mass is that of the top-k token
    that is exactly the label, as an in-process simulator reads the label's own token; labels missing from
    a position's top-k share what its top-k does not cover, evenly; each row is renormalized over the
    labels. All positions of a request at once: a feature has hundreds of slots of ~20 entries each, too
    few for numpy one by one."""
    counts: list[int] = []
    keys: list[Any] = []
    values: list[Any] = []
    for top in tops:  # two C-level calls a position: no Python loop over its entries
        if top is None:
            raise MalformedLogprobs("a slot position has no log-probabilities")
        counts.append(len(top))
        keys.extend(top)
        values.extend(top.values())
    bad = set(map(type, values)) - {float, int}  # bool is neither
    if bad:
        raise MalformedLogprobs(f"a log-probability is {min(kind.__name__ for kind in bad)}, expected a number")
    listed_logprobs = np.asarray(values, dtype=np.float64)
    if np.isnan(listed_logprobs).any():
        raise MalformedLogprobs("a log-probability is not a number")
    owners = np.repeat(np.arange(len(tops)), counts)
    entry_mass = np.exp(np.minimum(listed_logprobs, 0.0))
    listed = np.bincount(owners, weights=entry_mass, minlength=len(tops))
    column = {label: index for index, label in enumerate(labels)}
    columns = np.fromiter(map(column.get, keys, repeat(-1, len(keys))), dtype=np.int64, count=len(keys))
    is_label = columns >= 0
    mass = np.zeros((len(tops), len(labels)))
    mass[owners[is_label], columns[is_label]] = entry_mass[is_label]
    missing = mass == 0
    n_missing = missing.sum(axis=1)
    share = np.maximum(0.0, 1.0 - listed) / np.maximum(n_missing, 1)
    mass = np.where(missing, share[:, None], mass)
    total = mass.sum(axis=1, keepdims=True)
    uniform = np.full_like(mass, 1 / len(labels))
    return np.where(total > 0, mass / np.where(total > 0, total, 1.0), uniform), n_missing


def label_distribution(top: dict | None, labels: list[str]) -> tuple[np.ndarray, int]:
    """`label_distributions` at one position."""
    rows, missing = label_distributions([top], labels)
    return rows[0], int(missing[0])


def choice_distribution(top: dict[str, float], choices: list[str]) -> np.ndarray | None:
    """P(each choice) from a first answer token's top-k: a token counts for a choice when, stripped and
    lower-cased, it starts the choice ('Y' and ' yes' for 'Yes'); a token that starts two choices counts for
    none. None when no listed token starts any choice."""
    mass = np.zeros(len(choices))
    key = tuple(choices)
    for text, logprob in top.items():
        index = choice_of(text, key)
        if index is not None:
            mass[index] += math.exp(logprob)
    return mass / mass.sum() if mass.sum() > 0 else None


@functools.lru_cache(maxsize=4096)
def choice_of(token: str, choices: tuple[str, ...]) -> int | None:
    """The one choice `token` starts (see `choice_distribution`), else None. Cached: judges see the same few
    hundred tokens in every answer's top-k."""
    word = token.strip().lower()
    matches = [i for i, choice in enumerate(choices) if word and choice.lower().startswith(word)]
    return matches[0] if len(matches) == 1 else None
