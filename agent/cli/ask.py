"""`interp ask`: questions about one feature, each answered from experiments; sessions resume by id."""

import argparse

from agent.cli.flags import (
    ENDPOINT_FIELDS,
    FEATURE_SET_HELP,
    LOCAL_MODEL_FIELDS,
    DeprecatedFlag,
    agent_flags,
    config_from_args,
    quiet_transformers,
)
from agent.labeling.config import LabelConfig
from tools.errors import InterpError


def command_ask(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.ask.session import open_session
    from agent.ask.sessions import Sessions, sessions_path
    from agent.ask.terminal import ToolPrinter, converse, show_answer, show_history, show_sessions
    from agent.investigate.free_agent import Budget

    if args.sessions:
        path = sessions_path(args.catalog)
        if not path.exists():
            raise InterpError(f"no ask sessions beside {args.catalog} yet ({path})")
        sessions = Sessions(path)
        show_sessions(sessions)
        sessions.close()
        return
    feature = args.feature if args.feature is not None else args.old_feature
    config = config_from_args(LabelConfig, args)
    with open_session(config, args.catalog, args.feature_set, feature, args.session, args.graph,
                      Budget(args.max_tool_calls, args.max_tokens, args.max_seconds), watcher=ToolPrinter()) as session:
        resumed = f", {session.row['questions']} earlier questions" if args.session else ""
        print(f"session {session.id}: feature {session.feature} of {session.row['feature_set_id']}, "
              f"{session.asker.name} graph, LLM {config.llm}{resumed}", flush=True)
        if args.session and not args.question:
            show_history(session, last=2)
        if args.question:
            show_answer(session.ask(args.question))
        else:
            converse(session)
        print(f"resume with: interp ask --session {session.id}", flush=True)


def register(commands: argparse._SubParsersAction) -> None:
    ask = commands.add_parser("ask", help="question a feature: experiments run and cited for each answer; "
                                          "interactive, or once with --question; sessions resume by id")
    ask.add_argument("feature_set", nargs="?", help=f"{FEATURE_SET_HELP}; not needed with --session")
    ask.add_argument("feature", nargs="?", type=int, help="the feature to ask about (in a session: /feature N "
                     "switches)")
    ask.add_argument("--feature", dest="old_feature", type=int, action=DeprecatedFlag,
                     instead="write `interp ask SET FEATURE`")
    ask.add_argument("--question", "-q", help="answer this one question and exit")
    ask.add_argument("--session", help="resume this session (its feature set, feature and conversation)")
    ask.add_argument("--sessions", action="store_true", help="list the sessions beside the catalog and exit")
    ask.add_argument("--graph", choices=("auto", "fixed", "free"), default=None,
                     help="auto (default): free for an endpoint, fixed for a local LLM; fixed: the graph picks "
                          "the experiments from the question, any LLM; free: the LLM calls the tools")
    agent_flags(ask, "ask", ENDPOINT_FIELDS + LOCAL_MODEL_FIELDS)
    ask.set_defaults(handler=command_ask)
