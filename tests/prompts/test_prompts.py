"""Prompt files: versioned, hashed, and filled without interpreting what is filled in."""

import pytest

from prompts import PROMPTS_DIR, load_prompt
from tools.errors import InterpError


def test_every_shipped_prompt_has_a_version_a_hash_and_renders():
    names = sorted(p.stem for p in PROMPTS_DIR.glob("*.md"))
    assert names == ["agent_system", "ask_answer", "ask_system", "ask_texts", "audit_texts", "detect", "detect_batch",
                     "explain", "explain_both", "explain_evidence", "explain_output", "fuzz", "fuzz_batch",
                     "intervene", "intruder", "investigate_hypothesis", "investigate_revise", "mcp_investigate",
                     "simulate"]
    for name in names:
        prompt = load_prompt(name)
        assert prompt.version >= 1 and len(prompt.sha256) == 16 and prompt.ref == f"{name}@v{prompt.version}"


def test_a_changed_word_changes_the_hash_and_filled_values_are_never_parsed(tmp_path):
    (tmp_path / "p.md").write_text("version: 1\n---\nExplain $examples\n")
    first = load_prompt("p", tmp_path)
    (tmp_path / "p.md").write_text("version: 1\n---\nDescribe $examples\n")
    assert load_prompt("p", tmp_path).sha256 != first.sha256
    assert first.render(examples="costs $5 {x} $examples") == "Explain costs $5 {x} $examples\n"
    with pytest.raises(InterpError, match="needs a value for 'examples'"):
        first.render()


def test_bad_prompt_files_are_clear_errors(tmp_path):
    with pytest.raises(InterpError, match="no prompt 'nope'"):
        load_prompt("nope", tmp_path)
    (tmp_path / "bad.md").write_text("Explain $examples\n")
    with pytest.raises(InterpError, match="must start with 'version: N'"):
        load_prompt("bad", tmp_path)
