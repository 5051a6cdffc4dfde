"""`interp`: the command line. Each module of this package registers one group of commands; flags map one to
one onto the config dataclasses, whose fields carry their help, and nothing else reads configuration."""

import argparse
import logging
import sys

from agent.cli import ask, audit, cache, evaluate, experiments, features, investigate, label, mcp, serve
from tools.errors import InterpError
from tools.text import visible

COMMAND_GROUPS = (cache, experiments, label, investigate, evaluate, audit, ask, features, mcp, serve)
LIBRARY_LOGGERS = ("agent", "tools", "evals")


class StdoutLines(logging.Handler):
    """The library reports progress through `logging`; the command line shows each message as a plain line
    on standard output (looked up at each message, so a redirected stdout is honoured)."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), flush=True)


def show_library_messages() -> None:
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, StdoutLines) for handler in logger.handlers):
            logger.addHandler(StdoutLines())
        logger.setLevel(logging.INFO)
        logger.propagate = False


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="interp", description="Automated interpretability workbench.")
    commands = parser.add_subparsers(dest="command", required=True)
    for group in COMMAND_GROUPS:
        group.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    show_library_messages()
    try:
        args.handler(args)
    except InterpError as error:
        print(f"error: {visible(str(error))}", file=sys.stderr)
        return getattr(error, "exit_code", 2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
