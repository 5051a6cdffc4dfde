"""The CLI reference page, generated from the parser itself, so the docs cannot drift from the flags:
`python -m agent.cli.reference > docs/reference/cli.md` writes it, and a test fails when the file differs.

Argparse has no public API for walking its subcommands; `_SubParsersAction` and `_actions` are its long-stable
internals, the same ones mkdocs-click-style generators and `argparse-manpage` read.
"""

import argparse
import sys

from agent.cli import build_parser

HEADER = """# Command reference

Generated from the parser by `python -m agent.cli.reference > docs/reference/cli.md`; a test fails when this
page and the parser disagree. Every command prints results on stdout and logs, progress and errors on stderr
(see [exit codes and environment](exit-codes.md)).
"""


def subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str, argparse.ArgumentParser]]:
    """(name, help, parser) of each direct subcommand, in the order they were registered."""
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {choice.dest: choice.help or "" for choice in action._choices_actions}
            found += [(name, helps.get(name, ""), sub) for name, sub in action.choices.items()]
    return found


def display_name(action: argparse.Action, fallback: str) -> str:
    """An action's metavar (never a tuple here: no command gives one) or the fallback."""
    return action.metavar if isinstance(action.metavar, str) else fallback


def flag_rows(parser: argparse.ArgumentParser) -> list[str]:
    rows = []
    for action in parser._actions:
        if action.help == argparse.SUPPRESS or isinstance(action, argparse._SubParsersAction | argparse._HelpAction):
            continue
        if action.option_strings:
            name = ", ".join(action.option_strings)
            if action.nargs != 0:
                name += f" {display_name(action, action.dest.upper())}"
        else:
            name = display_name(action, action.dest)
        if action.choices and not isinstance(action.choices, dict):
            name += " {" + ",".join(map(str, action.choices)) + "}"
        text = (action.help or "").replace("%(default)s", str(action.default)).replace("|", "\\|")
        rows.append(f"| `{name}` | {text} |")
    return rows


def sentence(text: str) -> str:
    text = text.strip().rstrip(".")
    return text[:1].upper() + text[1:] + "." if text else ""


def synopsis(path: str, parser: argparse.ArgumentParser) -> str:
    """The command, `[options]`, and its positionals as argparse writes them (optional ones in brackets)."""
    positionals = []
    for action in parser._actions:
        if action.option_strings or isinstance(action, argparse._SubParsersAction):
            continue
        name = display_name(action, action.dest)
        positionals.append(f"[{name}]" if action.nargs == "?" else f"{name} [{name} ...]" if action.nargs == "+"
                           else name)
    return " ".join([path, "[options]", *positionals])


def command_section(path: str, help_text: str, parser: argparse.ArgumentParser) -> list[str]:
    lines = [f"## `{path}`", "", sentence(help_text), "", "```", synopsis(path, parser), "```", ""]
    rows = flag_rows(parser)
    if rows:
        lines += ["| argument | meaning |", "|---|---|", *rows, ""]
    return lines


def reference() -> str:
    parser = build_parser()
    lines = [HEADER]
    stack = [("interp " + name, help_text, sub) for name, help_text, sub in subcommands(parser)]
    while stack:
        path, help_text, sub = stack.pop(0)
        children = subcommands(sub)
        if children:
            lines += [f"## `{path}`", "", sentence(help_text), "",
                      *[f"- `{path} {name}`: {text}" for name, text, _ in children], ""]
            stack = [(f"{path} {name}", text, child) for name, text, child in children] + stack
        else:
            lines += command_section(path, help_text, sub)
    return "\n".join(lines).rstrip("\n") + "\n"


if __name__ == "__main__":
    sys.stdout.write(reference())
