"""`interp serve`: browse the catalog in a web page."""

import argparse
import ipaddress
import os

from agent.cli.flags import add_config_flags, catalog_flag, config_from_args
from agent.labeling.config import LabelConfig
from tools.errors import InterpError


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def command_serve(args: argparse.Namespace) -> None:
    import uvicorn

    from agent.web.app import create_app
    from tools.catalog import Catalog

    token = args.token or os.environ.get("INTERP_TOKEN") or None
    if not is_loopback(args.host) and not token:
        raise InterpError(f"--host {args.host} lets other machines in; pass --token (or set INTERP_TOKEN), which "
                          "every request must then carry")
    with Catalog(args.catalog, read_only=True):
        pass  # a missing or foreign file is refused now, in one line, not on the first page
    print(f"serving {args.catalog} on http://{args.host}:{args.port}/" + ("?token=..." if token else ""))
    config = config_from_args(LabelConfig, args)
    config.validate()
    uvicorn.run(create_app(args.catalog, token, config, args.ask_graph), host=args.host, port=args.port,
                log_level="warning")
    # uvicorn returns only once a signal (Ctrl-C, SIGTERM) has stopped the server, after a graceful shutdown;
    # the command line reports that as every command reports Ctrl-C (exit 130, one line).
    raise KeyboardInterrupt


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="browse the catalog in a web page: feature sets, features, "
                                "explanations and scores, search; a JSON API behind every page")
    serve.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1, this machine "
                       "only; any other needs --token)")
    serve.add_argument("--token", help="a secret every request must carry (?token=..., then a cookie; or "
                       "Authorization: Bearer); default $INTERP_TOKEN")
    serve.add_argument("--ask-graph", choices=("auto", "fixed", "free"), default="auto",
                       help="the Ask box's graph, as `interp ask --graph` (default: auto)")
    add_config_flags(serve, LabelConfig, skip=("explainer", "scorers", "simulator", "limit", "features", "concurrency",
                                               "judge_batch", "n_top", "n_quantile", "score_active", "score_random",
                                               "score_only", "price_per_mtok"))
    catalog_flag(serve)
    serve.set_defaults(handler=command_serve)
