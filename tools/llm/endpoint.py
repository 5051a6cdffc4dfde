"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, SGLang, llama.cpp, Ollama, `transformers serve`).

An endpoint is untrusted like any input. Each attempt has a total deadline (`timeout`), not only a limit
per read, so a server that trickles bytes cannot hold a call; the body is read up to a cap, so a huge one
cannot fill memory; and the answer's shape is checked field by field, so an HTML page or a choice without
a message is one feature's `LLMError`, never a crash of the run. Retries with exponential backoff (and the
server's Retry-After) on 408/409/429/5xx, dropped connections and missed deadlines; a semaphore caps the
calls in flight. The API key is read from the environment at start and never written anywhere: the
backend's name, which the catalog stores, holds no key.
"""

import json
import os
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

import openai

from tools.errors import InterpError
from tools.llm.interface import AgentTurn, Completion, LLMError, ToolRequest, Usage
from tools.llm.urls import is_loopback, public_url

OPENAI_URL = "https://api.openai.com/v1"
MAX_RESPONSE_BYTES = 8 * 1024 * 1024
"""A chat answer is kilobytes; a body past this is not one."""
RETRIED_STATUS = {408, 409, 429} | set(range(500, 600))
MAX_BACKOFF_SECONDS = 8.0


@dataclass(frozen=True)
class ChatAnswer:
    text: str
    tool_calls: list[ToolRequest]
    usage: Usage


def required(container: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    value = container.get(key) if isinstance(container, dict) else None
    if not isinstance(value, kind):
        raise ValueError(f"{where}.{key} is {type(value).__name__}, expected {getattr(kind, '__name__', kind)}")
    return value


def parse_answer(body: bytes) -> ChatAnswer:
    """The first choice of a chat completion, every field checked; ValueError names the first bad one."""
    data = json.loads(body)
    choices = required(data, "choices", list, "answer")
    if not choices:
        raise ValueError("it returned no choices")
    message = required(choices[0], "message", dict, "choices[0]")
    content = required(message, "content", (str, type(None)), "message")
    calls = []
    for index, call in enumerate(required(message, "tool_calls", (list, type(None)), "message") or []):
        function = required(call, "function", dict, f"tool_calls[{index}]")
        calls.append(ToolRequest(str(required(call, "id", (str, int), f"tool_calls[{index}]")),
                                 required(function, "name", str, "function"),
                                 required(function, "arguments", (str, type(None)), "function") or "{}"))
    usage = data.get("usage") if isinstance(data, dict) else None
    if isinstance(usage, dict):
        tokens = Usage(required(usage, "prompt_tokens", int, "usage"),
                       required(usage, "completion_tokens", int, "usage"))
    else:
        tokens = Usage()
    return ChatAnswer(content or "", calls, tokens)


def first_line(error: Exception) -> str:
    """The server's own message where it sent one ({"error": {"message": ...}}), else the client's."""
    body = getattr(error, "body", None)
    text = body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str) else ""
    text = (text or str(getattr(error, "message", "") or error)).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


class _Retryable(Exception):
    def __init__(self, error: LLMError, wait: float | None = None):
        super().__init__(str(error))
        self.error, self.wait = error, wait


def retry_after(error: openai.APIStatusError) -> float | None:
    """The server's Retry-After in seconds, when it sent a usable one."""
    try:
        value = float(error.response.headers.get("retry-after", ""))
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
            key = "unused"  # local servers ignore the key, but the client insists on one
        # Retries are ours (each attempt under its own deadline), so the client makes exactly one attempt.
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=0)
        self.timeout, self.max_retries = timeout, max_retries
        self.name = f"openai:{model}@{self.shown_url}"
        self._in_flight = threading.BoundedSemaphore(concurrency)

    def chat(self, messages: list[dict], max_tokens: int) -> Completion:
        answer = self._create(messages=messages, max_tokens=max_tokens)
        return Completion(answer.text, answer.usage)

    def chat_tools(self, messages: list[dict], tools: list[dict], max_tokens: int) -> AgentTurn:
        answer = self._create(messages=messages, max_tokens=max_tokens, tools=tools)
        return AgentTurn(answer.text, answer.tool_calls, answer.usage)

    def _create(self, **request: Any) -> ChatAnswer:
        with self._in_flight:
            for attempt in range(self.max_retries + 1):
                try:
                    return self._attempt(request)
                except _Retryable as retry:
                    if attempt == self.max_retries:
                        raise retry.error from None
                    time.sleep(retry.wait or min(MAX_BACKOFF_SECONDS, 0.5 * 2**attempt) * (0.5 + random.random()))
        raise AssertionError("unreachable")

    def _attempt(self, request: dict) -> ChatAnswer:
        """One request under the total deadline: the HTTP exchange runs on its own daemon thread, which is
        abandoned (to end when the server or the read timeout ends it) if the deadline passes."""
        outcome: dict[str, Any] = {}

        def fetch() -> None:
            try:
                outcome["body"] = self._fetch(request)
            except BaseException as error:  # handed to the caller's thread, classified there
                outcome["error"] = error

        worker = threading.Thread(target=fetch, daemon=True)
        worker.start()
        worker.join(self.timeout)
        if worker.is_alive():
            raise _Retryable(LLMError(f"LLM endpoint {self.shown_url} sent no whole answer within {self.timeout:g} s"))
        if "error" in outcome:
            raise self._classified(outcome["error"])
        try:
            answer = parse_answer(outcome["body"])
        except ValueError as error:  # JSONDecodeError is a ValueError
            raise LLMError(f"LLM endpoint {self.shown_url} sent a malformed answer: {str(error)[:200]}") from None
        return answer

    def _fetch(self, request: dict) -> bytes:
        with self.client.chat.completions.with_streaming_response.create(
                model=self.model, temperature=0, **request) as response:
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_RESPONSE_BYTES:
                    raise LLMError(f"LLM endpoint {self.shown_url} sent an answer over "
                                   f"{MAX_RESPONSE_BYTES // 2**20} MiB; refused")
            return bytes(body)

    def _classified(self, error: BaseException) -> BaseException:
        """The exception the caller sees: an LLMError (wrapped as retryable where a retry may help)."""
        if isinstance(error, LLMError):
            return error
        if isinstance(error, (openai.APIConnectionError, openai.APITimeoutError)):
            return _Retryable(LLMError(f"cannot reach LLM endpoint {self.shown_url}: {first_line(error)}"))
        if isinstance(error, openai.AuthenticationError):
            return LLMError(f"LLM endpoint {self.shown_url} rejected the API key in ${self.api_key_env}")
        if isinstance(error, openai.NotFoundError):
            return LLMError(f"model '{self.model}' not found at {self.shown_url}: {first_line(error)}")
        if isinstance(error, openai.APIStatusError):
            failure = LLMError(f"LLM endpoint {self.shown_url} answered {error.status_code}: {first_line(error)}",
                               status_code=error.status_code)
            return _Retryable(failure, retry_after(error)) if error.status_code in RETRIED_STATUS else failure
        if isinstance(error, openai.APIError):
            return LLMError(f"LLM endpoint {self.shown_url} sent a malformed answer: {first_line(error)}")
        return error

    def check(self) -> None:
        """One tiny call before a run, so an unreachable endpoint, a wrong key or an unknown model stops
        the run with one clear error instead of failing every feature."""
        try:
            self.chat([{"role": "user", "content": "Say OK."}], max_tokens=1)
        except LLMError as error:
            raise InterpError(str(error)) from None
