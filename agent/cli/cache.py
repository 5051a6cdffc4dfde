"""`interp cache` and `interp sae load|train|eval`: streaming a corpus through the subject model."""

import argparse

from agent.cli.flags import (
    add_config_flags,
    catalog_flag,
    config_from_args,
    field_help,
    json_flag,
    progress_flag,
    quiet_transformers,
)
from tools.configs import CacheConfig, SAEEvalConfig, TrainConfig


def command_cache(args: argparse.Namespace) -> None:
    # torch and transformers load only for commands that run the model.
    quiet_transformers()
    from tools.passes.cache import run_cache
    from tools.ray_workers import RaySettings

    ray = RaySettings(args.ray, args.workers, args.threads_per_worker) if args.ray else None
    run_cache(config_from_args(CacheConfig, args), args.catalog, progress=not args.no_progress, ray=ray)


def ray_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                        help="fold the pass on Ray workers: 'auto' (this machine; the default when the flag has no "
                        "value) or a cluster address; the catalog is the one a single process writes "
                        "(pip install -e '.[ray]')")
    parser.add_argument("--workers", type=int, default=2, help="Ray workers (with --ray; default: 2)")
    parser.add_argument("--threads-per-worker", type=int, default=1,
                        help="torch threads per Ray worker (with --ray; default: 1)")


def command_sae_load(args: argparse.Namespace) -> None:
    args.sae = args.sae_path
    command_cache(args)


def command_sae_train(args: argparse.Namespace) -> None:
    quiet_transformers()
    from tools.passes.sae_train import run_sae_train

    run_sae_train(config_from_args(TrainConfig, args), progress=not args.no_progress)


def command_sae_eval(args: argparse.Namespace) -> None:
    quiet_transformers()
    from rich.table import Table

    from agent.views.terminal import plain_console
    from tools.passes.sae_eval import run_sae_eval

    quality = run_sae_eval(config_from_args(SAEEvalConfig, args), args.catalog, progress=not args.no_progress)
    if args.json:
        from agent.views.terminal import json_text

        print(json_text(quality.as_row()))
        return
    table = Table(title=f"SAE quality on {quality.tokens:,} held-out tokens")
    table.add_column("metric")
    table.add_column("value", justify="right")
    for name, value in quality.as_row().items():
        table.add_row(name, f"{value:,}" if isinstance(value, int) else f"{value:.4f}")
    plain_console().print(table)


def register(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser("cache", help="stream a corpus through the model and catalog every feature's examples")
    add_config_flags(cache, CacheConfig)
    ray_flags(cache)
    catalog_flag(cache)
    progress_flag(cache)
    cache.set_defaults(handler=command_cache)

    sae = commands.add_parser("sae", help="SAEs: register one as a feature set, evaluate one")
    sae_commands = sae.add_subparsers(dest="sae_command", required=True)
    sae_load = sae_commands.add_parser("load", help="cache an SAE's or a transcoder's latents as a feature set "
                                       "(interp cache --sae)")
    sae_load.add_argument("sae_path", help=field_help(CacheConfig, "sae"))
    add_config_flags(sae_load, CacheConfig)
    ray_flags(sae_load)
    catalog_flag(sae_load)
    progress_flag(sae_load)
    sae_load.set_defaults(handler=command_sae_load)
    sae_train = sae_commands.add_parser("train", help="train a TopK SAE on the subject model's activations")
    add_config_flags(sae_train, TrainConfig)
    progress_flag(sae_train)
    sae_train.set_defaults(handler=command_sae_train)
    sae_eval = sae_commands.add_parser("eval", help="FVU, L0, dead latents and loss increase on held-out tokens")
    add_config_flags(sae_eval, SAEEvalConfig)
    catalog_flag(sae_eval)
    progress_flag(sae_eval)
    json_flag(sae_eval)
    sae_eval.set_defaults(handler=command_sae_eval)
