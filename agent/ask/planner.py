"""The fixed graph's planner: the question's words pick the experiments (quoted text is run through the model,
"ablate" and "steer" run those interventions, a concept the feature might "fire on" has the LLM write
sentences that are and are not examples of it)."""

import re
from dataclasses import dataclass

from agent.investigate.toolbox import MAX_TEXT_CHARS, MAX_TEXTS, ToolCall
from evals.records import FeatureRecord

TEST_SENTENCES = 4
STEER_MULTIPLE = 10.0
"""Steering adds this many times the feature's corpus maximum: strong enough to show an effect."""

QUOTED = re.compile(r'"([^"]{2,})"|“([^”]{2,})”|(?<!\w)\'([^\']{2,})\'(?!\w)|`([^`]{2,})`')
ABLATE = re.compile(r"\b(ablat\w*|zero(?:ed|ing)?|knock\w* (?:it )?out|remov\w*|disabl\w*|turn\w* (?:it )?off|"
                    r"switch\w* (?:it )?off)\b", re.I)
STEER = re.compile(r"\b(steer\w*|amplif\w*|boost\w*|strengthen\w*|turn\w* (?:it )?(?:up|down)|increas\w*|"
                   r"add(?:ed|ing)?|clamp\w*)\b", re.I)
NEGATIVE = re.compile(r"\b(negativ\w*|suppress\w*|decreas\w*|reduc\w*|lower\w*|turn\w* (?:it )?down|invert\w*)\b",
                      re.I)
EFFECT = re.compile(r"\b(predict\w*|promot\w*|outputs?|logits?|next tokens?|downstream|effects? on)\b", re.I)
CONCEPT = re.compile(r"\b(?:fires?|firing|activat(?:e|es|ing)|respond(?:s|ing)?|reacts?|detects?|encodes?|"
                     r"represents?|tracks?|cares?|lights? up|sensitive)\b"
                     r"(?:\s+(?:to|on|for|when|with|about|in|at))?\s+(.+)", re.I)
PEAK_LINE = re.compile(r"^\s*\d+\. \(peak (\d+)/10\) (.*)$")
"""A line of `activations_on`'s result (toolbox.example_lines)."""
PRONOUNS = {"it", "this", "that", "them", "anything", "something", "what"}


@dataclass(frozen=True)
class Plan:
    calls: tuple[dict, ...]
    """{"tool", "arguments", "label"}: run in order, each result shown under its label."""
    subject: str = ""
    """What the LLM should write example sentences of, run through the model ('' for none)."""


def quoted_texts(question: str) -> list[str]:
    found = [next(group for group in match.groups() if group) for match in QUOTED.finditer(question)]
    return list(dict.fromkeys(text[:MAX_TEXT_CHARS] for text in found))[:MAX_TEXTS]


def concept_of(question: str) -> str:
    """What the question asks the feature to fire on: 'does it fire on French text?' -> 'French text'."""
    match = CONCEPT.search(question)
    subject = match.group(1).strip(" ?.!") if match else ""
    return "" if subject.lower() in PRONOUNS else subject[:MAX_TEXT_CHARS]


def peak_prefix(record: FeatureRecord) -> str:
    """The strongest example up to its peak token, so a steered continuation starts where it fires."""
    if not record.explain_top:
        return "The"
    top = record.explain_top[0]
    peak = max(range(len(top.values)), key=top.values.__getitem__)
    return "".join(top.tokens[max(0, peak - 24):peak + 1]).strip()[:MAX_TEXT_CHARS] or "The"


def call(tool: str, label: str, **arguments) -> dict:
    return {"tool": tool, "arguments": arguments, "label": label}


def plan_experiments(question: str, record: FeatureRecord) -> Plan:
    feature, quoted = record.feature, quoted_texts(question)
    where = "the quoted text" if quoted else "the feature's top examples"
    calls = []
    if ABLATE.search(question):
        texts = quoted or [r.text[:MAX_TEXT_CHARS] for r in record.explain_top[:3]] or [question[:MAX_TEXT_CHARS]]
        calls.append(call("ablate", f"Zeroing the feature on {where}:", feature=feature, texts=texts))
    if STEER.search(question):
        sign = -1.0 if NEGATIVE.search(question) else 1.0
        strength = sign * min(100.0, STEER_MULTIPLE * record.max_act if record.max_act > 0 else 8.0)
        prompt = quoted[0] if quoted else peak_prefix(record)
        calls.append(call("steer", "Steering the feature:", feature=feature, prompt=prompt,
                          strength=round(strength, 2)))
    if quoted and not calls:
        calls.append(call("activations_on", "The feature on the quoted text:", feature=feature, texts=quoted))
    if EFFECT.search(question):
        calls.append(call("logit_effect", "Direct effect on next-token logits:", feature=feature, n=10))
    subject = "" if quoted else concept_of(question)
    if not calls and not subject:
        calls = [call("top_examples", "Where the feature fires most in the corpus:", feature=feature, n=5),
                 call("token_stats", "Tokens it fires on more than the corpus predicts:", feature=feature)]
    return Plan(tuple(calls), subject)


def measured(step: dict, done: ToolCall) -> list[str]:
    """A tool result in a few lines: each text's peak (all peaks and their mean for more than three texts),
    or the head of the result. Cut from the result the tool returned, so it quotes exactly what was shown."""
    body = done.result.split("\n")[1:-1]  # inside the <tool_result> tags
    peaks = [(int(match.group(1)), match.group(2)) for match in map(PEAK_LINE.match, body) if match]
    if done.ok and step["tool"] == "activations_on" and 0 < len(peaks) <= 3:
        shown = [f"peak {peak}/10: {text[:120]}" for peak, text in peaks]
    elif done.ok and peaks:
        values = [peak for peak, _ in peaks]
        shown = [f"peaks {', '.join(map(str, values))} of 10 (mean {sum(values) / len(values):.1f})"]
    else:
        shown = [line[:240] for line in body[:3]]
    return [f"- {step['label']} {' / '.join(shown)}"]


def list_items(text: str, limit: int = TEST_SENTENCES) -> list[str]:
    """Sentences from a list an LLM wrote: numbers, bullets and a gloss after a quoted sentence dropped
    ('1. "Je suis ici" - I am here' -> 'Je suis ici'), repeats removed."""
    items = []
    for line in text.splitlines():
        line = re.sub(r"^\s*(?:\d+[.)]|[-+*•])\s*", "", line).strip()
        quoted = re.match(r'^"([^"]{3,})"', line)
        item = (quoted.group(1) if quoted else line)[:MAX_TEXT_CHARS]
        if len(item) >= 3 and not item.endswith(":") and item not in items:
            items.append(item)
    return items[:limit]


def usable_answer(text: str) -> str:
    """The LLM's first paragraph, without the repeated lines and echoed result rows small models produce."""
    paragraph = re.sub(r"^\s*Answer:\s*", "", text).strip().split("\n\n")[0]
    kept: list[str] = []
    for line in paragraph.splitlines():
        line = line.strip()
        if line and line not in kept and not PEAK_LINE.search(line):
            kept.append(line)
    return " ".join(kept)[:600] or "(the LLM wrote no usable answer; the measurements are the evidence)"
