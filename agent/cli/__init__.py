"""`interp`: the command line. Each module of this package registers one group of commands; flags map one to
one onto the config dataclasses, whose fields carry their help, and nothing else reads configuration.

Results go to stdout; logs, progress and errors go to stderr, so `--json` output pipes into a JSON reader.
Exit codes: 0 done, 2 bad input or environment (one line on stderr), 130 stopped by Ctrl-C (its finished work
saved; rerun to resume), 1 our bug (with its traceback). Building the parser imports no torch: each command
imports what it runs."""

import argparse
import logging
import sys

from agent.cli import (
    ask,
    audit,
    cache,
    evaluate,
    experiments,
    features,
    investigate,
    label,
    mcp,
    serve,
    trace,
    transcoder,
)
from tools.errors import InterpError
from tools.text import visible

COMMAND_GROUPS = (cache, transcoder, trace, experiments, label, investigate, evaluate, audit, ask, features, mcp, serve)
LIBRARY_LOGGERS = ("agent", "tools", "evals")


STOPPED = "stopped (Ctrl-C)"
EXIT_STOPPED = 130


class StderrLines(logging.Handler):
    """The library reports progress through `logging`; the command line shows each message as a plain line
    on standard error, beside the progress bars (looked up at each message, so a redirected stderr is
    honoured), and keeps stdout for results."""

    def emit(self, record: logging.LogRecord) -> None:
        print(self.format(record), file=sys.stderr, flush=True)


def show_library_messages() -> None:
    for name in LIBRARY_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(handler, StderrLines) for handler in logger.handlers):
            logger.addHandler(StderrLines())
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
    except KeyboardInterrupt:  # outside a loop that turns Ctrl-C into a saved stop (those raise Interrupted)
        print(f"\n{STOPPED}", file=sys.stderr)
        return EXIT_STOPPED
    return 0


if __name__ == "__main__":
    sys.exit(main())
