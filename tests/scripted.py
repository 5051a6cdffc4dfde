"""A scripted LLM for unit tests: the only fake, at the network boundary. Its answers come from a function
of the prompt, so a test states exactly what a perfect, a useless or a broken LLM would say."""

import json
import re
from collections.abc import Callable

import numpy as np

from evals.records import display_token
from tools.llm.interface import AgentTurn, Completion, LLMError, SlotProbabilities, ToolRequest, Usage


class ScriptedChat:
    def __init__(self, answer: Callable[[str], str], name: str = "scripted"):
        self.answer = answer
        self.name = name
        self.prompts: list[str] = []

    def chat(self, messages: list[dict], max_tokens: int) -> Completion:
        prompt = messages[-1]["content"]
        self.prompts.append(prompt)
        text = self.answer(prompt)
        if isinstance(text, Exception):
            raise text
        return Completion(text, Usage(len(prompt.split()), len(text.split())))


def is_judge(prompt: str) -> bool:
    """A detection or fuzzing prompt, one excerpt (Yes/No) or several (a list of digits)."""
    return "Answer Yes or No" in prompt or "Answer with a list of" in prompt


def yes(prompt: str) -> str:
    """A judge that says yes to every excerpt, in the form the prompt asks for."""
    n = len(re.findall(r"^<example \d+>$", prompt, re.M))
    return "[" + ", ".join(["1"] * n) + "]" if n else "Yes"


def failing(message: str) -> Callable[[str], Exception]:
    return lambda prompt: LLMError(message)


class ScriptedSimulator:
    """A logit backend whose prediction for each token comes from `predict(tokens) -> values in [0, 1]`:
    it puts probability v on the top label and 1 - v on "0", so the expected value is linear in v."""

    def __init__(self, predict: Callable[[list[str]], list[float]], name: str = "scripted-simulator"):
        self.predict = predict
        self.name = name

    def chat(self, messages: list[dict], max_tokens: int) -> Completion:
        raise LLMError("the scripted simulator does not chat")

    def single_token_labels(self, labels: list[str]) -> bool:
        return True

    def slot_probabilities(self, prefix: str, parts: list[str], labels: list[str]) -> SlotProbabilities:
        tokens = [parts[0][:-1]] + [part.split("\n", 1)[1][:-1] for part in parts[1:-1]]
        values = np.clip(np.asarray(self.predict(tokens), dtype=np.float64), 0, 1)
        probabilities = np.zeros((len(tokens), len(labels)))
        probabilities[:, 0] = 1 - values
        probabilities[:, -1] += values
        return SlotProbabilities(probabilities, Usage(sum(len(p.split()) for p in [prefix, *parts]), 0))


def shown(tokens: list[str]) -> tuple[str, ...]:
    return tuple(display_token(t) for t in tokens)


class ScriptedAgent:
    """A tool-calling LLM whose turn is a function of the conversation so far: returns text, or a list of
    (tool name, arguments) to call."""

    def __init__(self, turn: Callable[[list[dict]], "str | list[tuple[str, object]]"], name: str = "scripted-agent"):
        self.turn = turn
        self.name = name
        self.conversations: list[list[dict]] = []

    def chat(self, messages: list[dict], max_tokens: int) -> Completion:
        self.conversations.append(list(messages))
        answer = self.turn(messages)
        return Completion(answer if isinstance(answer, str) else "", Usage(10, 5))

    def chat_tools(self, messages: list[dict], tools: list[dict], max_tokens: int) -> AgentTurn:
        self.conversations.append(list(messages))
        answer = self.turn(messages)
        if isinstance(answer, str):
            return AgentTurn(answer, [], Usage(10, 5))
        calls = [ToolRequest(f"call{len(self.conversations)}-{i}", name,
                             arguments if isinstance(arguments, str) else json.dumps(arguments))
                 for i, (name, arguments) in enumerate(answer)]
        return AgentTurn("", calls, Usage(10, 5))
