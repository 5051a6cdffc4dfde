"""What every command shares: flags generated from a config dataclass, the catalog flag, quiet model loads,
and the deprecation line an old spelling prints."""

import argparse
import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from agent.labeling.config import LabelConfig

DEFAULT_CATALOG = "interp.duckdb"
FEATURE_SET_HELP = "feature set: its id, a unique prefix of it, or a hook name (the newest set of that hook)"
ENDPOINT_FIELDS = ("llm", "base_url", "api_key_env", "timeout", "max_retries")
"""The LabelConfig fields that say which LLM answers and how it is reached."""
LOCAL_MODEL_FIELDS = ("device", "embedder")
SCORING_FIELDS = ("scorers", "simulator", "judge_batch", "score_active", "score_random")
"""What a command that scores one explanation on held-out examples reads (investigate, mcp)."""
AGENTS_NEVER_TOOK = ("explainer", "limit", "features", "n_top", "n_quantile")
"""LabelConfig fields investigate and ask never accepted; they accepted (and mostly ignored) the rest."""
NEXT_RELEASE = "0.2"
"""Old spellings keep working until this release, with a deprecation line."""


def deprecated(old: str, new: str) -> None:
    print(f"interp: {old} is deprecated and goes in {NEXT_RELEASE}; {new}", file=sys.stderr, flush=True)


class DeprecatedFlag(argparse.Action):
    """A flag kept for one release: it still sets its destination, and says once what to write instead."""

    def __init__(self, option_strings: Sequence[str], dest: str, instead: str = "", **kwargs: Any):
        self.instead = instead
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        deprecated(f"`{option_string}`", self.instead)
        setattr(namespace, self.dest, True if self.nargs == 0 else values)


def ignored_config_flags(parser: argparse.ArgumentParser, config_type: type, names: Sequence[str],
                         command: str) -> None:
    """Flags a command once accepted without reading them: still accepted for one release, and said to do
    nothing."""
    for name in names:
        field = next(field for field in dataclasses.fields(config_type) if field.name == name)
        parser.add_argument(f"--{name.replace('_', '-')}", dest=f"ignored_{name}", action=DeprecatedFlag,
                            instead=f"`interp {command}` never read it; drop it", type=type(field.default))


def field_help(config_type: type, name: str) -> str:
    """The help a config field carries (tools.configs.option)."""
    return next(field.metadata["help"] for field in dataclasses.fields(config_type) if field.name == name)


def add_config_flags(parser: argparse.ArgumentParser, config_type: type, skip: Sequence[str] = (),
                     only: Sequence[str] | None = None) -> None:
    """One flag per config field, with the field's help; `skip` leaves out fields a command has no use for, or
    `only` names the ones it reads (the rest keep their defaults)."""
    for field in dataclasses.fields(config_type):
        if field.name in skip or (only is not None and field.name not in only):
            continue
        flag = f"--{field.name.replace('_', '-')}"
        if isinstance(field.default, bool):  # --skip / --no-skip: `type=bool` would read "False" as true
            parser.add_argument(flag, dest=field.name, action=argparse.BooleanOptionalAction, default=field.default,
                                help=f"{field.metadata['help']} (default: {field.default})")
            continue
        parser.add_argument(flag, dest=field.name, type=type(field.default),
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


def json_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", action="store_true", help="print the results as JSON on stdout (logs and "
                        "progress stay on stderr)")


def quiet_transformers() -> None:
    """Our own bar shows progress; transformers' per-load bars would bury error lines."""
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()


def agent_flags(parser: argparse.ArgumentParser, command: str, fields: Sequence[str]) -> None:
    """What investigate and ask share: the free agent's budgets per question, the LabelConfig `fields` the
    command reads, the catalog."""
    parser.add_argument("--max-tool-calls", type=int, default=12,
                        help="free agent: tool calls per question (default: 12)")
    parser.add_argument("--max-tokens", type=int, default=60_000,
                        help="free agent: LLM tokens per question (default: 60000)")
    parser.add_argument("--max-seconds", type=float, default=600.0,
                        help="free agent: wall-clock seconds per question (default: 600)")
    add_config_flags(parser, LabelConfig, only=fields)
    once_accepted = [field.name for field in dataclasses.fields(LabelConfig) if field.name not in AGENTS_NEVER_TOOK]
    ignored_config_flags(parser, LabelConfig, [name for name in once_accepted if name not in fields], command)
    catalog_flag(parser)
