"""Explainers: each turns a feature's explain-split examples into a short natural-language explanation.

- `OneShotExplainer`: one LLM call over top and quantile examples with the activating tokens marked
  (Bills et al. 2023; delphi), optionally with `Evidence` (token statistics and the feature's
  output-side effect) for the evidence variant.
- `OutputExplainer`: what the feature makes the model say (Gur-Arieh et al. 2025): its direct logit
  effect and greedy continuations of neutral prompts with and without it steered ('output'), or that
  beside the marked examples ('both'). Descriptions of what a feature reads often miss what it does.
- `TokenStatsExplainer`: no LLM; names the tokens and bigrams most enriched at activating positions.
  A floor every LLM explainer should beat.

An explainer receives a FeatureRecord and reads only its explain split.
"""

import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from agent.labeling.token_stats import CorpusCounts, Enriched, TokenStatistics, token_statistics
from evals.records import (
    ActivationRecord,
    FeatureRecord,
    activation_level,
    active_positions,
    display_token,
    marked_text,
    spread,
)
from prompts import Prompt, load_prompt
from tools.errors import FeatureFailure
from tools.experiments.steering import OutputEvidence, Steerer
from tools.llm.interface import ChatLLM, LLMError, Usage

MAX_EXPLANATION_CHARS = 200
ECHOED_LAYOUT = re.compile(r"^(</?example\b|activations:)", re.IGNORECASE)
EXPLANATION_TOKENS = 48


@dataclass(frozen=True)
class Explanation:
    text: str
    usage: Usage = Usage()


class Explainer(Protocol):
    name: str
    llm_name: str
    """'' for explainers that call no LLM."""
    prompt_hash: str

    def explain(self, record: FeatureRecord) -> Explanation: ...


def quoted(items: list[Enriched]) -> str:
    return ", ".join(json.dumps(display_token(item.text), ensure_ascii=False) for item in items) or "(none)"


@dataclass(frozen=True)
class Evidence:
    statistics: TokenStatistics
    promoted: list[str]
    """Tokens the feature's direct logit effect raises most."""


def parse_explanation(text: str, limit: int = MAX_EXPLANATION_CHARS) -> str:
    """The first non-empty line, without a leading 'Explanation:' or wrapping quotes, skipping lines that
    echo the prompt's own layout (a base model continues "<example 16>"). Never a placeholder: an unusable
    answer raises, so the feature is recorded as failed rather than labeled with junk."""
    for line in text.splitlines():
        line = line.strip()
        if ECHOED_LAYOUT.match(line):
            continue
        if line.lower().startswith("explanation:"):
            line = line[len("explanation:"):].strip()
        line = line.strip("\"'` ").rstrip(".").strip()
        if line:
            if len(line) > limit:
                raise LLMError(f"explanation is {len(line)} characters, over the limit of {limit}: {line[:60]!r}...")
            return line
    raise LLMError(f"LLM gave no explanation (answer was {text.strip()[:60]!r})")


def shown_examples(records: list[ActivationRecord], max_act: float) -> str:
    blocks = []
    for number, record in enumerate(records, 1):
        positions = active_positions(record)
        levels = ", ".join(f"{json.dumps(display_token(record.tokens[i]), ensure_ascii=False)} "
                           f"({activation_level(record.values[i], max_act)})" for i in positions)
        blocks.append(f"<example {number}>\n{marked_text(record, set(positions))}\n</example {number}>\n"
                      f"activations: {levels}")
    return "\n\n".join(blocks)


class OneShotExplainer:
    def __init__(self, llm: ChatLLM, n_top: int = 10, n_quantile: int = 5,
                 evidence: Callable[[FeatureRecord], Evidence] | None = None, prompt: Prompt | None = None):
        self.llm = llm
        self.llm_name = llm.name
        self.n_top, self.n_quantile = n_top, n_quantile
        self.evidence = evidence
        self.name = "evidence" if evidence else "oneshot"
        self.prompt = prompt or load_prompt("explain_evidence" if evidence else "explain")
        self.prompt_hash = self.prompt.sha256

    def messages(self, record: FeatureRecord) -> list[dict]:
        # Quantile samples spread from the strongest to the weakest, so the LLM sees the feature's range.
        chosen = record.explain_top[:self.n_top] + spread(record.explain_quantile, self.n_quantile)
        values = {"examples": shown_examples(chosen, record.max_act)}
        if self.evidence:
            evidence = self.evidence(record)
            values |= {"tokens": quoted(evidence.statistics.tokens), "bigrams": quoted(evidence.statistics.bigrams),
                       "promoted": ", ".join(json.dumps(display_token(t), ensure_ascii=False)
                                             for t in evidence.promoted) or "(unknown)"}
        return [{"role": "user", "content": self.prompt.render(**values)}]

    def explain(self, record: FeatureRecord) -> Explanation:
        if not record.explain_top:
            raise FeatureFailure("no activating examples to explain (the feature never fired on the cached corpus)")
        completion = self.llm.chat(self.messages(record), max_tokens=EXPLANATION_TOKENS)
        return Explanation(parse_explanation(completion.text), completion.usage)


def shown_output(evidence: OutputEvidence) -> dict[str, str]:
    """The output side as prompt values: tokens quoted, each continuation pair in numbered tags."""
    def tokens(items: list[str]) -> str:
        return ", ".join(json.dumps(display_token(t), ensure_ascii=False) for t in items) or "(none)"

    blocks = [f"<continuation {n}>\nprompt: {display_token(c.prompt)}\nas it is: {display_token(c.clean)}\n"
              f"feature turned up: {display_token(c.steered)}\n</continuation {n}>"
              for n, c in enumerate(evidence.continuations, 1)]
    return {"promoted": tokens(evidence.promoted), "suppressed": tokens(evidence.suppressed),
            "continuations": "\n\n".join(blocks)}


class OutputExplainer:
    """'output': what the feature makes the model say, from its output evidence alone; 'both': the marked
    examples too. Named as the mode, so input-only and both can be compared feature by feature."""

    MODES = ("output", "both")

    def __init__(self, llm: ChatLLM, steerer: Steerer, mode: str, n_top: int = 10, n_quantile: int = 5):
        if mode not in self.MODES:
            raise ValueError(f"unknown output explainer mode '{mode}'; expected output or both")
        self.llm, self.steerer, self.name = llm, steerer, mode
        self.llm_name = llm.name
        self.n_top, self.n_quantile = n_top, n_quantile
        self.prompt = load_prompt(f"explain_{mode}")
        self.prompt_hash = self.prompt.sha256

    def messages(self, record: FeatureRecord) -> list[dict]:
        values = shown_output(self.steerer.output_evidence(record.feature, record.max_act))
        if self.name == "both":
            chosen = record.explain_top[:self.n_top] + spread(record.explain_quantile, self.n_quantile)
            values["examples"] = shown_examples(chosen, record.max_act)
        return [{"role": "user", "content": self.prompt.render(**values)}]

    def explain(self, record: FeatureRecord) -> Explanation:
        if self.name == "both" and not record.explain_top:
            raise FeatureFailure("no activating examples to explain (the feature never fired on the cached corpus)")
        completion = self.llm.chat(self.messages(record), max_tokens=EXPLANATION_TOKENS)
        return Explanation(parse_explanation(completion.text), completion.usage)


class TokenStatsExplainer:
    name = "token-stats"
    llm_name = ""
    prompt_hash = "method-2"
    """It has no prompt: its method's version stands in, so a rerun after the method changed (2: positions marked
    against the feature's maximum, not each example's peak) relabels instead of finding the old labels done."""

    def __init__(self, corpus: CorpusCounts, top: int = 3):
        self.corpus = corpus
        self.top = top

    def explain(self, record: FeatureRecord) -> Explanation:
        statistics = token_statistics(record, self.corpus, self.top)
        if not statistics.tokens:
            raise FeatureFailure("no activating tokens to count (the feature never fired on the cached corpus)")
        words = ", ".join(json.dumps(display_token(item.text).strip() or display_token(item.text),
                                     ensure_ascii=False) for item in statistics.tokens)
        text = f"the tokens {words}"
        if statistics.bigrams:
            text += f", as in {json.dumps(display_token(statistics.bigrams[0].text).strip(), ensure_ascii=False)}"
        return Explanation(text)


@dataclass
class RecordedExplainer:
    """Explanations already in the catalog (imported, or an earlier run's), scored again: it is keyed like the
    explainer that wrote them, so a run finds them done and only scores; it never explains."""

    name: str
    llm_name: str
    prompt_hash: str

    def explain(self, record: FeatureRecord) -> Explanation:
        raise FeatureFailure(f"feature {record.feature} has no explanation by {self.name} to score")
