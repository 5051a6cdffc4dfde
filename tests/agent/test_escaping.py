"""Untrusted text (corpus, LLM answers, server errors) is data everywhere it is shown: in a prompt it cannot
close our delimiters, in a terminal no control character or Rich markup acts, in a report no HTML or
Markdown survives. Checked for arbitrary Unicode, and for the strings a user actually tripped on."""

import io
import re
import unicodedata
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from agent.audit.report import html_text, markdown_text
from agent.views.terminal import plain_console, show_labels
from evals.records import CLOSERS, DELIMITER_NAMES, ActivationRecord, display_token, marked_text
from tools.text import is_control, visible, visible_lines

HOSTILE = ["[/quote]", "[red]gone[/red]", "a\x1b[2Jb", "carriage\rreturn", "line\u2028sep", "bidi\u202eevil",
           "<script>alert(1)</script>", "| a | b |\n|---|", "tab\there", "\x00\x07\x7f\x85"]
PROMPTS = Path(__file__).parents[2] / "prompts"
ANY_TEXT = st.text(st.characters(codec="utf-8"), max_size=80) | st.sampled_from(HOSTILE)


def no_controls(text: str) -> bool:
    return not any(is_control(c) or unicodedata.category(c) == "Cc" for c in text)


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_prompt_text_cannot_close_a_delimiter_or_break_a_line(text):
    shown = display_token(text)
    assert not CLOSERS.search(shown) and "<<" not in shown and ">>" not in shown and no_controls(shown)
    assert shown.replace("‹", "<").replace("›", ">") == visible(text).replace("‹", "<").replace("›", ">")


@settings(max_examples=300, deadline=None)
@given(st.lists(ANY_TEXT | st.sampled_from(["<", "/", "example", ">", "<<", " </", "EXAMPLE 1>"]), max_size=12))
def test_tokens_cannot_close_a_delimiter_together(tokens):
    record = ActivationRecord(tokens, [0.0] * len(tokens))
    shown = marked_text(record, set())
    assert not CLOSERS.search(shown) and "<<" not in shown and ">>" not in shown and no_controls(shown)
    marked = marked_text(record, set(range(0, len(tokens), 2)))
    assert not re.search(r"<\s*/\s*(?:" + "|".join(DELIMITER_NAMES) + r")\b", marked, re.IGNORECASE)


def test_tags_reach_the_llm_as_they_are():
    assert [display_token(t) for t in ("<html>", "</div>", "<", "a > b")] == ["<html>", "</div>", "<", "a > b"]
    assert marked_text(ActivationRecord([" <", "html", ">"], [0.0, 3.0, 0.0]), {1}) == " <<<html>>>"


def test_every_tag_in_our_prompts_is_a_delimiter_untrusted_text_cannot_close():
    texts = [path.read_text() for path in PROMPTS.glob("*.md")]
    tags = {name.lower() for text in texts for name in re.findall(r"</?([A-Za-z_]+)[ >]", text)}
    assert tags - {"like"} <= set(DELIMITER_NAMES)  # "<<like this>>" is a mark, shown as an example of one


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_terminal_text_is_printed_as_it_is_with_controls_visible(text):
    out = io.StringIO()
    plain_console(file=out, width=100_000, soft_wrap=True, color_system=None).print(visible(text))
    assert out.getvalue() == visible(text) + "\n"  # no markup parsed, nothing dropped or added
    assert no_controls(visible(text))
    assert no_controls(visible_lines(text).replace("\n", ""))


@settings(max_examples=300, deadline=None)
@given(ANY_TEXT)
def test_report_text_holds_no_markup(text):
    html_shown, markdown = html_text(text), markdown_text(text)
    for shown in (html_shown, markdown):
        assert "<" not in shown and ">" not in shown and no_controls(shown) and "\n" not in shown
    assert '"' not in html_shown
    unescaped = markdown.replace("\\\\", "")
    for special in "|*_[]`#":
        assert special not in unescaped.replace(f"\\{special}", "")


def test_explanations_with_markup_and_escapes_print_in_the_label_table(capsys):
    rows = [{"feature": i, "status": "ok", "text": text, "error": None, "scores": []} for i, text in enumerate(HOSTILE)]
    rows.append({"feature": 99, "status": "failed", "text": None, "error": "[/bold] server said \x1b[31mno",
                 "scores": []})
    show_labels(rows, "hostile [/title]", [])
    out = capsys.readouterr().out
    assert "\x1b" not in out and "[/quote]" in out and "[red]gone[/red]" in out and "␛[2J" in out
    assert "hostile [/title]" in out and "[/bold] server said ␛[31mno" in out


def test_every_terminal_view_prints_hostile_text_as_text(capsys, tmp_path):
    from agent.ask.terminal import ToolPrinter
    from agent.investigate.toolbox import ToolCall
    from agent.views.terminal import show_agent_messages, show_eval, show_investigation_step, show_search
    from evals.tables import EvalRow

    hostile = "x[/quote]\x1b[2J\r\u2028[red]y"
    show_search([{"similarity": 0.5, "feature_set_id": "s", "feature": 1, "explainer": "e", "text": hostile}],
                hostile, "emb", tmp_path)
    show_eval([EvalRow(f"explainer {hostile}", "auroc", 0.5, 3, 0.1, 0.9)], "eval")
    show_agent_messages([{"role": "assistant", "content": hostile},
                         {"role": "tool", "content": f"<tool_result>\n{hostile}\n</tool_result>"}])
    show_investigation_step("hypothesis", {"hypothesis": hostile})
    printed: list[str] = []
    printer = ToolPrinter(write=printed.append)
    printer.started("activations_on", {"texts": [hostile]})
    printer.finished(ToolCall("activations_on", {}, True, f"<tool_result>\n{hostile}\n</tool_result>", 0.1))
    out = capsys.readouterr().out + "\n".join(printed)
    assert "\x1b" not in out and "\r" not in out and "\u2028" not in out
    assert out.count("[/quote]") >= 6 and "␛[2J" in out
