"""The fixed graph's planner: the question's words pick the experiments (quoted text is run through the model,
"ablate" and "steer" run those interventions, a concept the feature might "fire on" has the LLM write
sentences that are and are not examples of it)."""

import re
from dataclasses import dataclass

from agent.investigate.measure import PEAK_LINE, call, peak_prefix, steer_strength
from agent.investigate.toolbox import MAX_TEXT_CHARS, MAX_TEXTS
from evals.records import FeatureRecord

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


def plan_experiments(question: str, record: FeatureRecord) -> Plan:
    feature, quoted = record.feature, quoted_texts(question)
    where = "the quoted text" if quoted else "the feature's top examples"
    calls = []
    if ABLATE.search(question):
        texts = quoted or [r.text[:MAX_TEXT_CHARS] for r in record.explain_top[:3]] or [question[:MAX_TEXT_CHARS]]
        calls.append(call("ablate", f"Zeroing the feature on {where}:", feature=feature, texts=texts))
    if STEER.search(question):
        strength = steer_strength(record, -1.0 if NEGATIVE.search(question) else 1.0)
        prompt = quoted[0] if quoted else peak_prefix(record)
        calls.append(call("steer", "Steering the feature:", feature=feature, prompt=prompt,
                          strength=strength))
    if quoted and not calls:
        calls.append(call("activations_on", "The feature on the quoted text:", feature=feature, texts=quoted))
    if EFFECT.search(question):
        calls.append(call("logit_effect", "Direct effect on next-token logits:", feature=feature, n=10))
    subject = "" if quoted else concept_of(question)
    if not calls and not subject:
        calls = [call("top_examples", "Where the feature fires most in the corpus:", feature=feature, n=5),
                 call("token_stats", "Tokens it fires on more than the corpus predicts:", feature=feature)]
    return Plan(tuple(calls), subject)


def usable_answer(text: str) -> str:
    """The LLM's first paragraph, without the repeated lines and echoed result rows small models produce."""
    paragraph = re.sub(r"^\s*Answer:\s*", "", text).strip().split("\n\n")[0]
    kept: list[str] = []
    for line in paragraph.splitlines():
        line = line.strip()
        if line and line not in kept and not PEAK_LINE.search(line):
            kept.append(line)
    return " ".join(kept)[:600] or "(the LLM wrote no usable answer; the measurements are the evidence)"
