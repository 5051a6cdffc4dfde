"""Simulation through an OpenAI-compatible completions endpoint: the simulator's label distribution at every
slot of a prompt, read from the log-probabilities the server returns for the prompt's own tokens.

Servers offer those in two ways, and `EndpointSlots.probe` tries both once, before a run writes anything:
the legacy `echo: true` with `logprobs: k` (vLLM, and OpenAI's own completions API once did) and vLLM's
`prompt_logprobs: k` with `return_token_ids`. Echo comes first because its answer is a third the size
(one `{text: logprob}` per entry instead of `{id: {logprob, rank, decoded_token}}`): at 20 entries for
each of a feature's ~13k prompt tokens, parsing is the client's largest cost. All of a feature's examples
go in one request (the completions API takes a list of prompts), up to `batch` prompts, and they share
one prefix, so the server's prefix cache computes the instructions once.
"""

from collections.abc import Callable

import simdjson

from tools.errors import InterpError
from tools.llm.endpoint import MAX_RESPONSE_BYTES, TOP_LOGPROBS, OpenAIChat, usage_of
from tools.llm.interface import LLMError, SlotProbabilities, Usage
from tools.llm.json_documents import PARSERS, Extracted
from tools.llm.logprobs import (
    MalformedLogprobs,
    PromptTokens,
    from_echo,
    from_prompt_logprobs,
    label_distribution,
    label_distributions,
    slot_positions,
)

LABELS = [str(i) for i in range(11)]
PROBE = "Levels:\n" + "".join(f"x\t{label}\n" for label in LABELS)
"""Every label after a tab, as slots put them: shows whether the endpoint returns prompt log-probabilities
and which labels its tokenizer keeps as one token."""
ANSWERS_BYTES = 4 * 2**20
"""Per prompt and 20 entries a token: a 1,000-token prompt is about 1 MiB in vLLM's shape."""


def parsed_choices(data: simdjson.Object, count: int,
                   read: Callable[[simdjson.Object], PromptTokens]) -> tuple[list[PromptTokens], Usage]:
    """The answer's choices in prompt order, each read by `read` (which leaves the log-probabilities in
    the document, made into Python objects only where a slot reads them: `EchoTops`)."""
    found = data.get("choices")
    listed: simdjson.Array | list = found if isinstance(found, simdjson.Array) else []
    choices = [choice for choice in listed if isinstance(choice, simdjson.Object)]
    if len(choices) != count or len(listed) != count:
        raise MalformedLogprobs(f"expected {count} choices")

    def index(choice: simdjson.Object) -> int:
        value = choice.get("index", 0)
        return value if isinstance(value, int) else 0

    return [read(choice) for choice in sorted(choices, key=index)], usage_of(data)


class EndpointSlots:
    """A `SlotLLM` over an endpoint; named as the endpoint's model, so the catalog says which model simulated."""

    MODES: dict[str, Callable[[simdjson.Object], PromptTokens]] = {"echo": from_echo,
                                                                   "prompt_logprobs": from_prompt_logprobs}

    def __init__(self, endpoint: OpenAIChat, mode: str, top_k: int, one_token_labels: set[str], batch: int = 32):
        self.endpoint = endpoint
        self.name = endpoint.name
        self.mode, self.top_k, self.batch = mode, top_k, batch
        self.one_token_labels = one_token_labels

    @classmethod
    def probe(cls, endpoint: OpenAIChat, top_k: int = TOP_LOGPROBS) -> "EndpointSlots":
        """Which way the endpoint gives prompt log-probabilities; an InterpError naming the alternatives when
        it gives neither."""
        tried = []
        for mode in cls.MODES:
            for k in dict.fromkeys((top_k, 5)):  # 5: the most OpenAI's legacy completions ever gave
                simulator = cls(endpoint, mode, k, set())
                try:
                    simulator.one_token_labels, _ = simulator.request([PROBE], probe_labels)
                except (LLMError, MalformedLogprobs) as error:
                    tried.append(f"{mode} (top {k}): {str(error)[:120]}")
                    if getattr(error, "status_code", None) == 400 and k != 5:
                        continue  # perhaps only the size of k was refused
                    break
                return simulator
        raise InterpError(f"LLM endpoint {endpoint.shown_url} gives no prompt log-probabilities (tried "
                          f"{'; '.join(tried)}), which simulation needs: pass --simulator local:PATH to simulate "
                          "with a local model, or leave simulation out of --scorers")

    def request(self, prompts: list[str],
                extract: Callable[[list[PromptTokens]], Extracted]) -> tuple[Extracted, Usage]:
        """One completions request for `prompts`, and what `extract` reads from their tokens while the
        answer's document is alive (plain values only: the document's parser is reused after)."""
        fields: dict = ({"echo": True, "logprobs": self.top_k} if self.mode == "echo"
                        else {"extra_body": {"prompt_logprobs": self.top_k, "return_token_ids": True}})
        read = self.MODES[self.mode]
        limit = MAX_RESPONSE_BYTES + ANSWERS_BYTES * len(prompts) * max(1, self.top_k // 20)

        def take(data: simdjson.Object) -> tuple[Extracted, Usage]:
            answers, usage = parsed_choices(data, len(prompts), read)
            return extract(answers), usage

        return self.endpoint.complete(lambda body: PARSERS.read(body, take), limit=limit, prompt=prompts,
                                      max_tokens=1, **fields)

    def single_token_labels(self, labels: list[str]) -> bool:
        return all(label in self.one_token_labels for label in labels)

    def slot_probabilities(self, prefix: str, parts: list[str], labels: list[str]) -> SlotProbabilities:
        return self.slot_probabilities_batch(prefix, [parts], labels)[0]

    def slot_probabilities_batch(self, prefix: str, examples: list[list[str]],
                                 labels: list[str]) -> list[SlotProbabilities]:
        results = []
        tabs_before = prefix.count("\t")
        for start in range(0, len(examples), self.batch):
            chunk = examples[start:start + self.batch]

            def distributions(answers: list[PromptTokens], chunk: list[list[str]] = chunk) -> list[tuple]:
                """Every slot of the chunk's examples read in one pass, then split by example."""
                tops: list[dict | None] = []
                ends: list[int] = []
                try:
                    for parts, tokens in zip(chunk, answers, strict=True):
                        tops += [tokens.tops[at] for at in slot_positions(tokens, tabs_before, len(parts) - 1)]
                        ends.append(len(tops))
                    rows, missing = label_distributions(tops, labels)
                except MalformedLogprobs as error:
                    raise LLMError(f"LLM endpoint {self.endpoint.shown_url}: {error}") from None
                return [(rows[first:end], int(missing[first:end].sum()))
                        for first, end in zip([0, *ends[:-1]], ends, strict=True)]

            rows, usage = self.request([prefix + "".join(parts) for parts in chunk], distributions)
            # The request's cost goes on its first example, so summing never counts it twice.
            results += [SlotProbabilities(distribution, usage if index == 0 else Usage(), missing)
                        for index, (distribution, missing) in enumerate(rows)]
        return results


def probe_labels(answers: list[PromptTokens]) -> set[str]:
    """The labels the endpoint's tokenizer keeps as one token, after checking that every slot of the probe
    carries log-probabilities (not only tokens)."""
    tokens = answers[0]
    positions = slot_positions(tokens, 0, len(LABELS))
    for at in positions:
        label_distribution(tokens.tops[at], LABELS)
    return {label for label, at in zip(LABELS, positions, strict=True) if tokens.texts[at] == label}
