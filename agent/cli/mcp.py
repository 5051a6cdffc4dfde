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

    from agent.investigate.workbench import Workbench
    from agent.labeling.backends import Backends, bench_steerer, build_scorers
    from agent.mcp.server import WorkbenchServer
    from agent.mcp.session import SessionBudget, Shared
    from tools.catalog import Catalog

    budget = SessionBudget(args.session_tool_calls, args.session_seconds)
    config = config_from_args(LabelConfig, args)
    config.validate()
    with Catalog(args.catalog, read_only=True) as catalog:
        ref = args.feature_set or only_feature_set(catalog)
    bench = Workbench(args.catalog, ref, config.device, config.embedder)
    scorers = build_scorers(config, Backends(config), bench.embedder, bench_steerer(bench, config))
    server = WorkbenchServer(Shared(args.catalog, bench, config, scorers, budget), version("interp-agent"))
    anyio.run(server.serve_http, args.http) if args.http else anyio.run(server.serve_stdio)


def only_feature_set(catalog) -> str:
    sets = catalog.feature_sets()
    if len(sets) != 1:
        known = ", ".join(row["feature_set_id"] for row in sets) or "none yet; run `interp cache`"
        raise InterpError(f"which feature set should the server investigate? pass --feature-set (known: {known})")
    return sets[0]["feature_set_id"]


def register(commands: argparse._SubParsersAction) -> None:
    server = commands.add_parser("mcp", help="serve the workbench's tools, feature pages and an investigation "
                                 "prompt to MCP clients (Claude Code, Cursor, ...), recording every call")
    server.add_argument("--feature-set", help=f"the set the tools act on (default: the catalog's only one); "
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
