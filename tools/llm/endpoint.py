"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, SGLang, llama.cpp, Ollama, `transformers serve`).

An endpoint is untrusted like any input. Each attempt has a total deadline (`timeout`), not only a limit
per read, so a server that trickles bytes cannot hold a call; the body is read up to a cap, so a huge one
cannot fill memory; and the answer's shape is checked field by field, so an HTML page or a choice without
a message is one feature's `LLMError`, never a crash of the run. Retries with exponential backoff (and the
server's Retry-After) on 408/409/429/5xx, dropped connections and missed deadlines; a semaphore caps the
calls in flight. The API key is read from the environment at start and never written anywhere: the
backend's name, which the catalog stores, holds no key.

The requests go out through `tools.llm.transport` (urllib3), not the `openai` client: we never used its
typed `create` (vLLM's fields, our own retries and deadlines), and against a fast endpoint its request
building and response handling cost more CPU than everything else we do per call, which is what limits
how many features a minute `interp label` gets through (benchmarks/label_capacity.py; transport.py has
the numbers).
"""

import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
import orjson
import simdjson

from tools.errors import InterpError
from tools.llm.interface import AgentTurn, ChoiceAnswer, Completion, LLMError, ToolRequest, Usage
from tools.llm.json_documents import PARSERS, plain
from tools.llm.logprobs import choice_distribution
from tools.llm.transport import JSONPoster, StatusFailure, TooLarge, TransportFailure
from tools.llm.urls import is_loopback, public_url

OPENAI_URL = "https://api.openai.com/v1"
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
"""A chat answer is kilobytes; a body past this is not one."""
RETRIED_STATUS = {408, 409, 429} | set(range(500, 600))
MAX_BACKOFF_SECONDS = 8.0
ROUTES = {"chat": "/chat/completions", "completions": "/completions"}
ROUTE_NEEDS = {
    "chat": "is --base-url the OpenAI-compatible root, ending in /v1?",
    "completions": "simulation reads prompt log-probabilities from the completions API (vLLM serves it; a "
                   "chat-only server cannot simulate: pass --simulator local, or drop simulation from --scorers)",
}
TOP_LOGPROBS = 20
"""vLLM's default limit (`--max-logprobs`) and OpenAI's: enough to see every label of a slot or a judge."""
Parsed = TypeVar("Parsed")


@dataclass(frozen=True)
class ChatAnswer:
    text: str
    tool_calls: list[ToolRequest]
    usage: Usage
    token_tops: list[tuple[str, dict]] | None = None
    """Each answer token with its top log-probabilities (as sent), when they were asked for and sent."""

    @property
    def first_token_top(self) -> dict | None:
        return self.token_tops[0][1] if self.token_tops else None


def usage_of(answer: simdjson.Object) -> Usage:
    """The answer's token counts (both kinds of answer carry them alike); none when it sends no usage."""
    usage = plain(answer.get("usage"))
    if isinstance(usage, dict):
        return Usage(required(usage, "prompt_tokens", int, "usage"), required(usage, "completion_tokens", int, "usage"))
    return Usage()


def token_tops(logprobs: object) -> list[tuple[str, dict]] | None:
    """A chat choice's `logprobs.content[i]`, left in the answer's document, as (token, {token: logprob})
    for each answer token; None when absent or not in that shape (the judge then reads the answer's text,
    and says so). Only the tokens' texts and log-probabilities become Python objects: a judge's listed
    answer has ~30 tokens of 20 alternatives, each with its bytes as a list of numbers, and making all of
    them (orjson did) was most of a judge's parsing and most of the collector's work in a label run."""
    content = logprobs.get("content") if isinstance(logprobs, simdjson.Object) else None
    if not isinstance(content, simdjson.Array):
        return None
    tops = []
    for item in content:
        if not isinstance(item, simdjson.Object):
            return None
        token, entries = item.get("token"), item.get("top_logprobs")
        if not isinstance(entries, simdjson.Array) or not isinstance(token, str):
            return None
        listed = [entry for entry in entries if isinstance(entry, simdjson.Object)]
        top = dict(zip([entry.get("token") for entry in listed], [entry.get("logprob") for entry in listed],
                       strict=True))
        # checked a position at a time in C: a judge's listed answer has ~30 tokens of 20 entries
        if len(listed) != len(entries) or not set(map(type, top)) <= {str} \
                or not set(map(type, top.values())) <= {float, int}:
            return None
        tops.append((token, top))
    return tops or None


def required(container: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, kind):
        raise ValueError(f"{where}.{key} is {type(value).__name__}, expected {getattr(kind, '__name__', kind)}")
    return value


def parse_answer(body: bytes) -> ChatAnswer:
    """The first choice of a chat completion, every field checked; ValueError names the first bad one."""
    return PARSERS.read(body, chat_answer)


def chat_answer(data: simdjson.Object) -> ChatAnswer:
    choices = data.get("choices")
    if not isinstance(choices, simdjson.Array):
        raise ValueError(f"answer.choices is {type(plain(choices)).__name__}, expected list")
    if not len(choices):
        raise ValueError("it returned no choices")
    first = choices[0]
    # Only the message is made Python values: Object.items() would make the log-probabilities too.
    choice = {"message": plain(first.get("message"))} if isinstance(first, simdjson.Object) else plain(first)
    message = required(choice, "message", dict, "choices[0]")
    content = required(message, "content", (str, type(None)), "message")
    calls = []
    for index, call in enumerate(required(message, "tool_calls", (list, type(None)), "message") or []):
        function = required(call, "function", dict, f"tool_calls[{index}]")
        calls.append(ToolRequest(str(required(call, "id", (str, int), f"tool_calls[{index}]")),
                                 required(function, "name", str, "function"),
                                 required(function, "arguments", (str, type(None)), "function") or "{}"))
    logprobs = first.get("logprobs") if isinstance(first, simdjson.Object) else None
    return ChatAnswer(content or "", calls, usage_of(data), token_tops(logprobs))


def server_message(status: int, body: bytes) -> str:
    """The first line of what a refusing server said: OpenAI's `{"error": {"message": ...}}`, the other
    shapes compatible servers send (`{"error": "..."}`, `{"message": ...}`, FastAPI's `{"detail": ...}`),
    else the body's text; at most 200 characters, never empty."""
    try:
        data = orjson.loads(body)
    except orjson.JSONDecodeError:
        data = None
    text: Any = body.decode("utf-8", "replace") if data is None else ""
    if isinstance(data, dict):
        error = data.get("error")
        text = error.get("message") if isinstance(error, dict) else error
        text = text or data.get("message") or data.get("detail") or ""
        text = text if isinstance(text, str) else orjson.dumps(text).decode()
    lines = str(text).strip().splitlines()
    return lines[0][:200] if lines else f"HTTP {status}"


class _Retryable(Exception):
    def __init__(self, error: LLMError, wait: float | None = None):
        super().__init__(str(error))
        self.error, self.wait = error, wait


def retry_after(headers: Mapping[str, str]) -> float | None:
    """The server's Retry-After in seconds, when it sent a usable one."""
    try:
        value = float(headers.get("retry-after", ""))
    except ValueError:
        return None
    return value if 0 <= value <= 60 else None


class OpenAIChat:
    def __init__(self, model: str, base_url: str = "", api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 4, concurrency: int = 8):
        self.model = model
        self.base_url = (base_url or OPENAI_URL).rstrip("/")
        self.shown_url = public_url(self.base_url)
        self.api_key_env = api_key_env
        key = os.environ.get(api_key_env, "")
        if not key:
            if not is_loopback(self.base_url):
                raise InterpError(f"${api_key_env} is not set; export the API key for {self.shown_url} there "
                                  "(or name another variable with --api-key-env)")
        # One pooled connection per call in flight; retries are ours, each attempt under its own deadline.
        self.poster = JSONPoster(self.base_url, {"authorization": f"Bearer {key}"} if key else {}, timeout,
                                 concurrency)
        self.timeout, self.max_retries = timeout, max_retries
        self.name = f"openai:{model}@{self.shown_url}"
        self._in_flight = threading.BoundedSemaphore(concurrency)
        self.chat_logprobs = False
        """Whether the endpoint sends the answer's top log-probabilities (found by `check`)."""
        self.top_logprobs = TOP_LOGPROBS

    def chat(self, messages: list[dict], max_tokens: int) -> Completion:
        answer = self._create(messages=messages, max_tokens=max_tokens)
        return Completion(answer.text, answer.usage)

    def chat_tools(self, messages: list[dict], tools: list[dict], max_tokens: int) -> AgentTurn:
        answer = self._create(messages=messages, max_tokens=max_tokens, tools=tools)
        return AgentTurn(answer.text, answer.tool_calls, answer.usage)

    def choose(self, messages: list[dict], choices: list[str], max_tokens: int) -> ChoiceAnswer:
        """The answer with its first token's top log-probabilities where the endpoint gives them (one call
        either way): the choices' probabilities are read from those, and the text is kept for when none
        of the listed tokens starts a choice."""
        answer = self._judged(messages, max_tokens)
        top = answer.first_token_top
        return ChoiceAnswer(None if top is None else choice_distribution(top, choices), answer.text, answer.usage)

    def choose_each(self, messages: list[dict], n: int, choices: list[str], max_tokens: int) -> ChoiceAnswer:
        """An answer that lists `n` choices (one token each, like the digits of [1, 0, 1]): where the endpoint
        sends log-probabilities and the answer has exactly `n` choice tokens, each one's distribution over
        the choices ([n, n_choices]); the text is kept for when it does not."""
        answer = self._judged(messages, max_tokens)
        picks = [top for token, top in answer.token_tops or [] if token.strip() in choices]
        rows = [choice_distribution(top, choices) for top in picks]
        if len(rows) != n or any(row is None for row in rows):
            return ChoiceAnswer(None, answer.text, answer.usage)
        return ChoiceAnswer(np.stack([row for row in rows if row is not None]), answer.text, answer.usage)

    def _judged(self, messages: list[dict], max_tokens: int) -> ChatAnswer:
        """A judge's answer, with its tokens' top log-probabilities when the endpoint sends them."""
        logprobs: dict[str, Any] = {"logprobs": True, "top_logprobs": self.top_logprobs} if self.chat_logprobs else {}
        return self._create(messages=messages, max_tokens=max_tokens, **logprobs)

    def complete(self, parse: Callable[[bytes], Parsed], limit: int = MAX_RESPONSE_BYTES, **request: Any) -> Parsed:
        """A `/v1/completions` request (vLLM's own fields go in `extra_body`), its body read by `parse`,
        which raises ValueError on a shape it does not know."""
        return self._create(route="completions", parse=parse, limit=limit, **request)

    def _create(self, route: str = "chat", parse: Callable[[bytes], Any] = parse_answer,
                limit: int = MAX_RESPONSE_BYTES, **request: Any) -> Any:
        with self._in_flight:
            for attempt in range(self.max_retries + 1):
                try:
                    return self._attempt(route, request, parse, limit)
                except _Retryable as retry:
                    if attempt == self.max_retries:
                        raise retry.error from None
                    time.sleep(retry.wait or min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _attempt(self, route: str, request: dict, parse: Callable[[bytes], Any], limit: int) -> Any:
        """One request under the total deadline: the HTTP exchange runs on its own daemon thread, which is
        abandoned (to end when the server or the read timeout ends it) if the deadline passes."""
        outcome: dict[str, Any] = {}

        def fetch() -> None:
            try:
                outcome["body"] = self._fetch(route, request, limit)
            except BaseException as error:  # handed to the caller's thread, classified there
                outcome["error"] = error

        worker = threading.Thread(target=fetch, daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            raise _Retryable(LLMError(f"LLM endpoint {self.shown_url} sent no whole answer within {self.timeout:g} s"))
        if "error" in outcome:
            raise self._classified(outcome["error"], route)
        try:
            return parse(outcome["body"])
        except ValueError as error:  # JSONDecodeError is a ValueError
            raise LLMError(f"LLM endpoint {self.shown_url} sent a malformed answer: {str(error)[:200]}") from None

    def _fetch(self, route: str, request: dict, limit: int) -> bytes:
        """One POST, its body read up to `limit`; vLLM's own fields, passed in `extra_body` as the `openai`
        client takes them, go into the body here."""
        extra = request.get("extra_body") or {}
        body = {"model": self.model, "temperature": 0, **{k: v for k, v in request.items() if k != "extra_body"},
                **extra}
        try:
            return self.poster.post(ROUTES[route], orjson.dumps(body), limit)
        except TooLarge:
            raise LLMError(f"LLM endpoint {self.shown_url} sent an answer over {limit // 2**20} MiB; refused") from None

    def _classified(self, error: BaseException, route: str) -> BaseException:
        """The exception the caller sees: an LLMError (wrapped as retryable where a retry may help)."""
        if isinstance(error, LLMError):
            return error
        if isinstance(error, TransportFailure):  # refused, reset, timed out, or not HTTP at all
            return _Retryable(LLMError(f"cannot reach LLM endpoint {self.shown_url}: {error}"))
        if isinstance(error, StatusFailure):
            message = server_message(error.status, error.body)
            if error.status == 401:
                return LLMError(f"LLM endpoint {self.shown_url} rejected the API key in ${self.api_key_env}",
                                status_code=401)
            if error.status == 404:
                return self._not_found(route, message)
            failure = LLMError(f"LLM endpoint {self.shown_url} answered {error.status}: {message}",
                               status_code=error.status)
            return _Retryable(failure, retry_after(error.headers)) if error.status in RETRIED_STATUS else failure
        return error

    def _not_found(self, route: str, message: str) -> LLMError:
        """A 404 is a missing model only when the server says so (OpenAI's and vLLM's messages name the model
        or a model_not_found code); a bare "Not Found" is a route the server does not have, like
        `/v1/completions` on a chat-only server."""
        said = message.lower()
        if self.model.lower() in said or "model" in said:
            return LLMError(f"model '{self.model}' not found at {self.shown_url}: {message}", status_code=404)
        return LLMError(f"LLM endpoint {self.shown_url} has no {ROUTES[route]} route (404: {message}); "
                        f"{ROUTE_NEEDS[route]}", status_code=404)

    def close(self) -> None:
        self.poster.close()

    def check(self) -> None:
        """One tiny call before a run, so an unreachable endpoint, a wrong key or an unknown model stops
        the run with one clear error instead of failing every feature; it also finds whether the endpoint
        sends the answer's top log-probabilities, which judges read P(yes) from."""
        messages = [{"role": "user", "content": "Say OK."}]
        answer = None
        for k in dict.fromkeys((TOP_LOGPROBS, 5)):
            try:
                answer = self._create(messages=messages, max_tokens=1, logprobs=True, top_logprobs=k)
                self.top_logprobs = k
                break
            except LLMError as error:
                if error.status_code != 400:
                    raise InterpError(str(error)) from None
                # a server that refuses the logprobs fields (or this many); the plain call below says if it works
        if answer is None:
            try:
                self.chat(messages, max_tokens=1)
            except LLMError as error:
                raise InterpError(str(error)) from None
        self.chat_logprobs = answer is not None and answer.first_token_top is not None
