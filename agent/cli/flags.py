"""What every command shares: flags generated from a config dataclass, the catalog flag, quiet model loads."""

import argparse
import dataclasses
import os
from pathlib import Path
from typing import Any

from agent.labeling.config import LabelConfig

DEFAULT_CATALOG = "interp.duckdb"
FEATURE_SET_HELP = "feature set id (or unique prefix, or hook name)"


def field_help(config_type: type, name: str) -> str:
    """The help a config field carries (tools.configs.option)."""
    return next(field.metadata["help"] for field in dataclasses.fields(config_type) if field.name == name)


def add_config_flags(parser: argparse.ArgumentParser, config_type: type, skip: tuple[str, ...] = ()) -> None:
    """One flag per config field, with the field's help; `skip` leaves out fields a command has no use for
    (they keep their defaults)."""
    for field in dataclasses.fields(config_type):
        if field.name in skip:
            continue
        parser.add_argument(f"--{field.name.replace('_', '-')}", dest=field.name, type=type(field.default),
                            default=field.default, help=f"{field.metadata['help']} (default: {field.default})")


def config_from_args(config_type: type, args: argparse.Namespace) -> Any:
    return config_type(**{field.name: getattr(args, field.name, field.default)
                          for field in dataclasses.fields(config_type)})


def catalog_flag(parser: argparse.ArgumentParser) -> None:
    default = os.environ.get("INTERP_CATALOG", DEFAULT_CATALOG)
    parser.add_argument("--catalog", type=Path, default=Path(default),
                        help=f"DuckDB catalog file (default: $INTERP_CATALOG or {DEFAULT_CATALOG})")


def progress_flag(parser: argparse.ArgumentParser, help: str = "no progress bar") -> None:
    parser.add_argument("--no-progress", action="store_true", help=help)


def quiet_transformers() -> None:
    """Our own bar shows progress; transformers' per-load bars would bury error lines."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def agent_flags(parser: argparse.ArgumentParser) -> None:
    """What investigate and ask share: the free agent's budgets, the LLMs and scorers, the catalog."""
    parser.add_argument("--max-tool-calls", type=int, default=12, help="free agent: tool calls per question")
    parser.add_argument("--max-tokens", type=int, default=60_000, help="free agent: LLM tokens per question")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="free agent: wall-clock seconds per question (default: 600)")
    add_config_flags(parser, LabelConfig, skip=("explainer", "limit", "features", "n_top", "n_quantile"))
    catalog_flag(parser)
