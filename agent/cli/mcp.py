"""`interp mcp`: the workbench as an MCP server (stdio, or streamable HTTP on loopback)."""

import argparse
from importlib.metadata import version

from agent.cli.flags import FEATURE_SET_HELP, add_config_flags, catalog_flag, config_from_args, quiet_transformers
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

    budget = SessionBudget(args.max_tool_calls, args.max_seconds)
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
    server.add_argument("--max-tool-calls", type=int, default=200, help="tool calls per session (default: 200)")
    server.add_argument("--max-seconds", type=float, default=3600.0,
                        help="wall-clock seconds per session (default: 3600)")
    server.add_argument("--scorers", default="embedding",
                        help="scorers run on each recorded finding, on held-out examples (default: embedding, which "
                        "needs no LLM; add simulation,detection,fuzzing with --llm openai:MODEL)")
    add_config_flags(server, LabelConfig, skip=("explainer", "limit", "features", "n_top", "n_quantile", "scorers"))
    catalog_flag(server)
    server.set_defaults(handler=command_mcp)
