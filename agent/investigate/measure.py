"""Experiments both fixed graphs run (`interp investigate` and `interp ask`): test sentences taken from a list
an LLM wrote, a tool result cut to the lines that matter, the peaks it measured, and where and how hard to
steer. The graphs choose the experiments; these read and summarize them the same way for both."""

import re

from agent.investigate.toolbox import MAX_TEXT_CHARS, ToolCall
from evals.records import FeatureRecord
from tools.experiments import steering

TEST_SENTENCES = 4
PEAK_LINE = re.compile(r"^\s*\d+\. \(peak (\d+)/10\) (.*)$")
"""A line of `activations_on`'s and `top_examples`' results (toolbox.example_lines)."""


def steer_strength(record: FeatureRecord, sign: float = 1.0) -> float:
    return steering.steer_strength(record.max_act, sign)


def peak_prefix(record: FeatureRecord) -> str:
    """The strongest example up to its peak token, so a steered continuation starts where it fires."""
    if not record.explain_top:
        return "The"
    top = record.explain_top[0]
    peak = max(range(len(top.values)), key=top.values.__getitem__)
    return "".join(top.tokens[max(0, peak - 24):peak + 1]).strip()[:MAX_TEXT_CHARS] or "The"


def call(tool: str, label: str, **arguments) -> dict:
    return {"tool": tool, "arguments": arguments, "label": label}


def peaks_of(done: ToolCall) -> list[int]:
    """Each text's peak (0-10 of the corpus maximum) in an `activations_on` or `top_examples` result."""
    body = done.result.split("\n")[1:-1]  # inside the <tool_result> tags
    return [int(match.group(1)) for match in map(PEAK_LINE.match, body) if match] if done.ok else []


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
