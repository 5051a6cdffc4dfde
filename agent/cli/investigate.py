"""`interp investigate`: one feature, hypothesis to scored explanation, every experiment logged."""

import argparse
import contextlib
import sys

from agent.cli.flags import (
    ENDPOINT_FIELDS,
    FEATURE_SET_HELP,
    LOCAL_MODEL_FIELDS,
    SCORING_FIELDS,
    agent_flags,
    config_from_args,
    json_flag,
    quiet_transformers,
)
from agent.labeling.config import LabelConfig


def command_investigate(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.investigate.free_agent import Budget
    from agent.investigate.graph import run_investigation
    from agent.views.terminal import json_text, show_investigation_step, show_labels

    config = config_from_args(LabelConfig, args)
    # With --json the steps are progress: they go to stderr, and stdout carries the one JSON object.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result = run_investigation(config, args.feature_set, args.feature, args.catalog, args.graph,
                                   Budget(args.max_tool_calls, args.max_tokens, args.max_seconds),
                                   on_step=show_investigation_step)
    row = {"feature": args.feature, "status": "ok" if result.explanation else "failed", "text": result.explanation,
           "error": result.error, "scores": result.scores}
    if args.json:
        print(json_text(row | {"explanation_id": result.explanation_id, "steps": result.steps,
                               "usage": result.usage}))
        return
    print(f"{result.steps} steps logged; LLM tokens {result.usage.prompt_tokens:,} prompt + "
          f"{result.usage.completion_tokens:,} completion; explanation {result.explanation_id}")
    show_labels([row], f"feature {args.feature}: investigated explanation", config.scorer_names())


def register(commands: argparse._SubParsersAction) -> None:
    investigate = commands.add_parser("investigate", help="investigate one feature: hypothesis, tests, revision, "
                                                          "scores, with every experiment logged")
    investigate.add_argument("feature_set", help=FEATURE_SET_HELP)
    investigate.add_argument("feature", type=int)
    investigate.add_argument("--graph", choices=("fixed", "free"), default="fixed",
                             help="fixed: the graph calls the tools, any LLM (default); free: the LLM calls them, "
                                  "needs an endpoint with tool calls")
    agent_flags(investigate, "investigate", ENDPOINT_FIELDS + LOCAL_MODEL_FIELDS + SCORING_FIELDS)
    json_flag(investigate)
    investigate.set_defaults(handler=command_investigate)
