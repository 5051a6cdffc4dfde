"""Which backend an LLM spec names: the embedded or a local model in-process, or an OpenAI-compatible endpoint."""

from tools.errors import InterpError
from tools.llm.interface import EMBEDDED_LLM, ChatLLM


def make_llm(spec: str, base_url: str = "", api_key_env: str = "OPENAI_API_KEY", timeout: float = 60.0,
             max_retries: int = 4, concurrency: int = 8, device: str = "auto") -> ChatLLM:
    """A backend from a spec: 'local' (the embedded LLM), 'local:PATH' (a HF folder or .gguf), or
    'openai:MODEL' (any OpenAI-compatible endpoint at `base_url`, key read from `api_key_env`)."""
    kind, _, rest = spec.partition(":")
    if kind == "local":
        from tools.llm.local import LocalLLM

        return LocalLLM.load(rest or EMBEDDED_LLM, device=device)
    if kind == "openai":
        if not rest:
            raise InterpError(f"LLM spec '{spec}' names no model; expected openai:MODEL, e.g. openai:gpt-4o-mini")
        from tools.llm.endpoint import OpenAIChat

        return OpenAIChat(model=rest, base_url=base_url, api_key_env=api_key_env, timeout=timeout,
                          max_retries=max_retries, concurrency=concurrency)
    raise InterpError(f"unknown LLM '{spec}'; expected local, local:PATH (HF folder or .gguf) or openai:MODEL")
