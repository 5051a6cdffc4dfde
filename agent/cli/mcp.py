"""`interp mcp`: the workbench as an MCP server (stdio, or streamable HTTP on loopback)."""

import argparse
from importlib.metadata import version

from agent.cli.flags import (
    ENDPOINT_FIELDS,
    FEATURE_SET_HELP,
    LOCAL_MODEL_FIELDS,
    SCORING_FIELDS,
    DeprecatedFlag,
    add_config_flags,
    catalog_flag,
    config_from_args,
    ignored_config_flags,
    quiet_transformers,
)
from agent.labeling.config import LabelConfig
from tools.errors import InterpError


def command_mcp(args: argparse.Namespace) -> None:
    quiet_transformers()
    try:
        import mcp  # noqa: F401
    except ImportError:
        raise InterpError("interp mcp needs the MCP SDK: pip install -e '.[mcp]'") from None
    import anyio

    from agent.labeling.backends import Backends, bench_steerer, build_scorers
    from agent.mcp.server import WorkbenchServer
    from agent.mcp.session import Benches, SessionBudget, Shared

    budget = SessionBudget(args.session_tool_calls, args.session_seconds)
    config = config_from_args(LabelConfig, args)
    config.validate()
    benches = Benches(args.catalog, config.device, config.embedder, args.feature_set)
    backends = Backends(config)

    def scorers_for(bench):  # the intervention scorer steers the model of the set it scores
        return build_scorers(config, backends, bench.embedder, bench_steerer(bench, config))

    server = WorkbenchServer(Shared(args.catalog, benches, config, scorers_for, budget), version("interp-agent"))
    if args.http:
        anyio.run(server.serve_http, args.http)
        raise KeyboardInterrupt  # as `interp serve`: uvicorn returns only once a signal stopped it
    anyio.run(server.serve_stdio)  # ends when the client closes stdin: a normal end


def register(commands: argparse._SubParsersAction) -> None:
    server = commands.add_parser("mcp", help="serve the workbench's tools, feature pages and an investigation "
                                 "prompt to MCP clients (Claude Code, Cursor, ...), recording every call")
    server.add_argument("--feature-set", help="the set a tool call acts on when it names none (default: the "
                        f"catalog's only set; every set is served, and a call names its own with feature_set); "
                        f"{FEATURE_SET_HELP}")
    server.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on 127.0.0.1:PORT/mcp "
                        "instead of stdio")
    server.add_argument("--session-tool-calls", type=int, default=200,
                        help="tool calls per client session (default: 200)")
    server.add_argument("--session-seconds", type=float, default=3600.0,
                        help="wall-clock seconds per client session (default: 3600)")
    # `--max-*` means "per question" in ask and investigate; here the budget is a session's.
    server.add_argument("--max-tool-calls", dest="session_tool_calls", type=int, action=DeprecatedFlag,
                        instead="write --session-tool-calls (--max-tool-calls means per question in ask)")
    server.add_argument("--max-seconds", dest="session_seconds", type=float, action=DeprecatedFlag,
                        instead="write --session-seconds (--max-seconds means per question in ask)")
    server.add_argument("--scorers", default="embedding",
                        help="scorers run on each recorded finding, on held-out examples (default: embedding, which "
                        "needs no LLM; add simulation,detection,fuzzing with --llm openai:MODEL)")
    fields = ENDPOINT_FIELDS + LOCAL_MODEL_FIELDS + SCORING_FIELDS
    add_config_flags(server, LabelConfig, only=[name for name in fields if name != "scorers"])
    ignored_config_flags(server, LabelConfig, ("concurrency", "score_only", "price_per_mtok"), "mcp")
    catalog_flag(server)
    server.set_defaults(handler=command_mcp)
