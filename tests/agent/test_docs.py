"""The docs cannot drift from the command line: every `interp ...` command shown in the README and the docs
parses against the real parser, the read-only ones run against a tiny catalog, and the command reference is
what the parser generates."""

import argparse
import re
import shlex
from pathlib import Path

import pytest

from agent.cli import build_parser, main
from agent.cli.reference import reference
from tools.testing.tiny import cache_tiny_catalog

ROOT = Path(__file__).parents[2]
REFERENCE = ROOT / "docs" / "reference" / "cli.md"
PAGES = [ROOT / "README.md", *sorted(path for path in (ROOT / "docs").rglob("*.md") if path != REFERENCE)]
"""The reference's synopses are generated from the parser (and tested below), not commands to run."""
COMMAND = re.compile(r"^\s*(\$\s+)?([A-Z_]+=\S*\s+)*interp(\s|$)")
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
RUNNABLE = {"features", "search", "export"}
"""Commands a tiny labeled catalog can serve: they read it and need no model or LLM."""


def shown_commands() -> list[tuple[str, list[str]]]:
    """(where, argv after `interp`) for every interp command in a fenced block: lines that start with
    `interp` or `$ interp`, and each `&& interp` of a chained line; a trailing `# comment` is dropped."""
    found = []
    for page in PAGES:
        for block in FENCE.findall(page.read_text(encoding="utf-8")):
            for line in block.splitlines():
                for part in line.split("&&"):
                    if not COMMAND.match(part):  # output lines, other programs
                        continue
                    words = shlex.split(part, comments=True)
                    words = words[1:] if words[:1] == ["$"] else words
                    cut = next((i for i, word in enumerate(words) if word[:1] in (">", "|")), len(words))
                    words = words[:cut]  # a shell redirection or pipe is not the command's
                    while words and re.fullmatch(r"[A-Z_]+=.*", words[0]):  # VAR=value interp ...
                        words = words[1:]
                    if words[:1] == ["interp"]:
                        found.append((f"{page.relative_to(ROOT)}: {part.strip()}", words[1:]))
    return found


COMMANDS = shown_commands()


def test_the_docs_show_commands_of_every_verb():
    verbs = {argv[0] for _, argv in COMMANDS if argv}
    registered = {name for name in build_parser()._subparsers._group_actions[0].choices}  # type: ignore[union-attr]
    assert registered <= verbs, f"no command shown for: {sorted(registered - verbs)}"


@pytest.mark.parametrize("where, argv", COMMANDS, ids=[where for where, _ in COMMANDS])
def test_every_command_shown_parses(where, argv, capsys):
    try:
        build_parser().parse_args(argv)
    except SystemExit:
        pytest.fail(f"{where} does not parse: {capsys.readouterr().err.strip()}")


def test_the_command_reference_is_generated_from_the_parser():
    assert REFERENCE.read_text(encoding="utf-8") == reference(), \
        "docs/reference/cli.md is stale: python -m agent.cli.reference > docs/reference/cli.md"


@pytest.fixture(scope="module")
def labeled_catalog(tmp_path_factory, tiny_models) -> tuple[Path, int]:
    """A tiny SAE set, labeled by token statistics (no LLM) and embedded, so search has something to find."""
    folder = tmp_path_factory.mktemp("docs")
    corpus = folder / "corpus.txt"
    from tools.testing.tiny import sentences

    corpus.write_text("\n".join(sentences(200)))
    catalog = cache_tiny_catalog(folder / "c.duckdb", tiny_models["gpt2"], corpus, folder / "sae")
    assert main(["label", "resid_post.1", "--explainer", "token-stats", "--scorers", "", "--limit", "6",
                 "--device", "cpu", "--catalog", str(catalog), "--no-progress"]) == 0
    import duckdb

    with duckdb.connect(str(catalog), read_only=True) as con:
        (width,) = con.execute("SELECT n_features FROM feature_sets").fetchone()  # type: ignore[misc]
    return catalog, width


RUNS = [(where, argv) for where, argv in COMMANDS
        if argv and argv[0] in RUNNABLE and "neuronpedia-upload" not in argv  # the upload bodies need the model
        and argv[1:2] != ["graph"]]  # a graph needs a transcoder set (tests/tools/test_attribution.py exports one)


@pytest.mark.parametrize("where, argv", RUNS, ids=[where for where, _ in RUNS])
def test_read_only_commands_shown_run_on_a_tiny_catalog(where, argv, labeled_catalog, tmp_path, capsys):
    """The command as shown, with the tiny catalog's set for the docs' set and its features for theirs."""
    catalog, width = labeled_catalog
    args: argparse.Namespace = build_parser().parse_args(argv)
    args.catalog = catalog
    if getattr(args, "feature_set", None) is not None:
        args.feature_set = "resid_post.1"
    if getattr(args, "feature", None) is not None:
        args.feature = args.feature % width
    if getattr(args, "out", None) is not None:
        args.out = tmp_path / "out"
    if getattr(args, "device", None) is not None:
        args.device = "cpu"
    args.handler(args)
    assert capsys.readouterr().out.strip(), f"{where} printed nothing"
