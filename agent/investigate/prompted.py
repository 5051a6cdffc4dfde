"""Graph nodes whose LLM answers prompt files: the fixed investigation graph and the fixed ask graph."""

import hashlib

from agent.investigate.toolbox import Toolbox
from prompts import load_prompt
from tools.llm.interface import ChatLLM, Usage


class PromptedSteps:
    """One LLM and one toolbox shared by a graph's nodes. Each answer is counted and written into the
    toolbox's log beside the tool calls, so the record reads in order; the prompts' hashes key the
    graph's output like an explainer's (name, LLM, prompt hash)."""

    prompt_names: tuple[str, ...] = ()

    def __init__(self, llm: ChatLLM, toolbox: Toolbox):
        self.llm, self.toolbox = llm, toolbox
        self.llm_name = llm.name
        self.prompts = {name: load_prompt(name) for name in self.prompt_names}
        self.usage = Usage()

    @property
    def prompt_hash(self) -> str:
        joined = "".join(self.prompts[name].sha256 for name in self.prompt_names)
        return hashlib.sha256(joined.encode()).hexdigest()[:16]

    def write(self, step: str, prompt: str, max_tokens: int, **values: str) -> str:
        content = self.prompts[prompt].render(**values)
        completion = self.llm.chat([{"role": "user", "content": content}], max_tokens=max_tokens)
        self.usage = self.usage + completion.usage
        self.toolbox.log_llm(step, {"prompt": prompt}, completion.text)
        return completion.text
