"""Any OpenAI-compatible chat endpoint (OpenAI, vLLM, SGLang, llama.cpp, Ollama, `transformers serve`).

Retries with exponential backoff on 408/409/429/5xx and dropped connections are the `openai` client's
own (`max_retries`); a semaphore caps the calls in flight. The API key is read from the environment at
start and never written anywhere: the backend's name, which the catalog stores, holds no key.
"""

import os
import threading
from ipaddress import ip_address
from urllib.parse import urlparse

import openai

from tools.errors import InterpError
from tools.llm.interface import AgentTurn, Completion, LLMError, ToolRequest, Usage

OPENAI_URL = "https://api.openai.com/v1"


def is_loopback(url: str) -> bool:
    host = urlparse(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def first_line(error: Exception) -> str:
    """The server's own message where it sent one ({"error": {"message": ...}}), else the client's."""
    body = getattr(error, "body", None)
    text = body.get("message") if isinstance(body, dict) and isinstance(body.get("message"), str) else ""
    text = (text or str(getattr(error, "message", "") or error)).strip()
    return text.splitlines()[0][:200] if text else type(error).__name__


class OpenAIChat:
    def __init__(self, model: str, base_url: str = "", api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
                 max_retries: int = 4, concurrency: int = 8):
        self.model = model
        self.base_url = (base_url or OPENAI_URL).rstrip("/")
        self.api_key_env = api_key_env
        key = os.environ.get(api_key_env, "")
        if not key:
            if not is_loopback(self.base_url):
                raise InterpError(f"${api_key_env} is not set; export the API key for {self.base_url} there "
                                  "(or name another variable with --api-key-env)")
            key = "unused"  # local servers ignore the key, but the client insists on one
        self.client = openai.OpenAI(base_url=self.base_url, api_key=key, timeout=timeout, max_retries=max_retries)
        self.name = f"openai:{model}@{self.base_url}"
        self._in_flight = threading.BoundedSemaphore(concurrency)

    def chat(self, messages: list[dict], max_tokens: int) -> Completion:
        response = self._create(messages=messages, max_tokens=max_tokens)
        text = response.choices[0].message.content or ""
        return Completion(text, self._usage(response))

    def chat_tools(self, messages: list[dict], tools: list[dict], max_tokens: int) -> AgentTurn:
        response = self._create(messages=messages, max_tokens=max_tokens, tools=tools)
        message = response.choices[0].message
        calls = [ToolRequest(call.id, call.function.name, call.function.arguments or "{}")
                 for call in message.tool_calls or []]
        return AgentTurn(message.content or "", calls, self._usage(response))

    @staticmethod
    def _usage(response) -> Usage:
        usage = response.usage
        return Usage(usage.prompt_tokens, usage.completion_tokens) if usage else Usage()

    def _create(self, **request):
        with self._in_flight:
            try:
                response = self.client.chat.completions.create(model=self.model, temperature=0, **request)
            except (openai.APIConnectionError, openai.APITimeoutError) as error:
                raise LLMError(f"cannot reach LLM endpoint {self.base_url}: {first_line(error)}") from None
            except openai.AuthenticationError:
                raise LLMError(f"LLM endpoint {self.base_url} rejected the API key in ${self.api_key_env}") from None
            except openai.NotFoundError as error:
                raise LLMError(f"model '{self.model}' not found at {self.base_url}: {first_line(error)}") from None
            except openai.APIStatusError as error:
                raise LLMError(f"LLM endpoint {self.base_url} answered {error.status_code}: "
                               f"{first_line(error)}", status_code=error.status_code) from None
            except (openai.APIError, ValueError) as error:  # a body that is not the chat format (or not JSON)
                raise LLMError(f"LLM endpoint {self.base_url} sent a malformed answer: {first_line(error)}") from None
        if not response.choices:
            raise LLMError(f"LLM endpoint {self.base_url} returned no choices")
        return response

    def check(self) -> None:
        """One tiny call before a run, so an unreachable endpoint, a wrong key or an unknown model stops
        the run with one clear error instead of failing every feature."""
        try:
            self.chat([{"role": "user", "content": "Say OK."}], max_tokens=1)
        except LLMError as error:
            raise InterpError(str(error)) from None
