"""`interp ablate` and `interp steer`: one feature, given text, and what changed."""

import argparse
from typing import TYPE_CHECKING

from agent.cli.flags import FEATURE_SET_HELP, catalog_flag, json_flag, quiet_transformers
from tools.errors import InterpError

if TYPE_CHECKING:  # torch loads only when a command runs the model
    from rich.console import Console
    from rich.table import Table

    from tools.experiments.interventions import InterventionEffect

TOP_TOKENS = 10


def shift_table(title: str, effect: "InterventionEffect") -> "Table":
    from rich.table import Table

    table = Table(title=title)
    for column in ("promoted", "logit change", "suppressed", "logit change "):
        table.add_column(column, justify="right" if "change" in column else "left")
    for up, down in zip(effect.promoted, effect.suppressed, strict=True):
        table.add_row(repr(up.token), f"{up.change:+.3f}", repr(down.token), f"{down.change:+.3f}")
    return table


def direct_effect(subject, source, feature: int) -> dict:
    """The tokens the feature's output direction promotes and suppresses through the unembedding."""
    from tools.experiments.interventions import direct_logit_effect, token_shifts

    direct = direct_logit_effect(subject, source, feature)
    return {"promotes": token_shifts(subject, direct, TOP_TOKENS, True),
            "suppresses": token_shifts(subject, direct, TOP_TOKENS, False)}


def effect_json(effect: "InterventionEffect") -> dict:
    """The measured change without the [vocab] tensor behind it."""
    return {"loss_clean": effect.loss_clean, "loss_edited": effect.loss_edited, "promoted": effect.promoted,
            "suppressed": effect.suppressed}


def print_direct_effect(console: "Console", subject, source, feature: int) -> None:
    direct = direct_effect(subject, source, feature)
    promoted = ", ".join(repr(s.token) for s in direct["promotes"])
    suppressed = ", ".join(repr(s.token) for s in direct["suppresses"])
    console.print(f"direct logit effect of {feature} (output direction through the unembedding): promotes "
                  f"{promoted}; suppresses {suppressed}")


def command_ablate(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.views.terminal import plain_console
    from tools.catalog import Catalog
    from tools.experiments.interventions import check_features, load_feature_source, measure_effect, set_to

    if not args.text:
        raise InterpError("give at least one --text to measure the ablation on")
    subject, source, feature_set = load_feature_source(args.catalog, args.feature_set, args.device)
    check_features(source, args.features)
    if args.mode == "mean":
        with Catalog(args.catalog, read_only=True) as catalog:
            values = [float(catalog.feature(feature_set["feature_set_id"], f)["mean_act"]) for f in args.features]
    elif args.mode == "clamp":
        if args.value is None:
            raise InterpError("--mode clamp needs --value")
        values = [args.value] * len(args.features)
    else:
        values = [0.0] * len(args.features)
    effect = measure_effect(subject, source, args.features, set_to(values), args.text, TOP_TOKENS)
    if args.json:
        from agent.views.terminal import json_text

        print(json_text({"feature_set": feature_set["feature_set_id"], "hook": source.hook.name,
                         "features": dict(zip(map(str, args.features), values, strict=True)), "mode": args.mode,
                         "texts": args.text, **effect_json(effect),
                         "direct": {str(f): direct_effect(subject, source, f) for f in args.features}}))
        return
    console = plain_console()
    settings = ", ".join(f"{f} -> {v:.4g}" for f, v in zip(args.features, values, strict=True))
    console.print(f"{feature_set['feature_set_id']} features {settings} ({args.mode}) at {source.hook.name}, "
                  f"on {len(args.text)} text(s)")
    console.print(f"next-token loss: {effect.loss_clean:.4f} -> {effect.loss_edited:.4f} "
                  f"({effect.loss_edited - effect.loss_clean:+.4f})")
    console.print(shift_table("mean next-token logit change over all positions", effect))
    for feature in args.features:
        print_direct_effect(console, subject, source, feature)


def command_steer(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.views.terminal import plain_console
    from tools.experiments.interventions import add, check_features, generate, load_feature_source, measure_effect

    subject, source, feature_set = load_feature_source(args.catalog, args.feature_set, args.device)
    check_features(source, args.feature)
    edit = add(args.strength)
    effect = measure_effect(subject, source, args.feature, edit, [args.prompt], TOP_TOKENS)
    clean = generate(subject, args.prompt, args.max_new_tokens)
    steered = generate(subject, args.prompt, args.max_new_tokens, edit=(source, args.feature, edit))
    if args.json:
        from agent.views.terminal import json_text

        print(json_text({"feature_set": feature_set["feature_set_id"], "hook": source.hook.name,
                         "feature": args.feature, "strength": args.strength, "prompt": args.prompt,
                         "without_steering": clean, "with_steering": steered, **effect_json(effect),
                         "direct": direct_effect(subject, source, args.feature)}))
        return
    console = plain_console()
    console.print(f"{feature_set['feature_set_id']} feature {args.feature} steered by {args.strength:+g} at "
                  f"{source.hook.name}")
    console.print(f"prompt: {args.prompt!r}")
    console.print(f"  without steering: {clean!r}")
    console.print(f"  with steering:    {steered!r}")
    console.print(f"next-token loss on the prompt: {effect.loss_clean:.4f} -> {effect.loss_edited:.4f}")
    console.print(shift_table("mean next-token logit change over the prompt", effect))
    print_direct_effect(console, subject, source, args.feature)


def register(commands: argparse._SubParsersAction) -> None:
    ablate = commands.add_parser("ablate", help="ablate or clamp features and show what changes on given text")
    ablate.add_argument("feature_set", help=FEATURE_SET_HELP)
    ablate.add_argument("features", type=int, nargs="+", metavar="feature")
    ablate.add_argument("--text", action="append", default=[], help="text to measure on (repeatable)")
    ablate.add_argument("--mode", choices=("zero", "mean", "clamp"), default="zero")
    ablate.add_argument("--value", type=float, help="the value for --mode clamp")
    ablate.add_argument("--device", default="auto", help="auto, cuda, mps, cpu (default: auto)")
    catalog_flag(ablate)
    json_flag(ablate)
    ablate.set_defaults(handler=command_ablate)

    steer = commands.add_parser("steer", help="add strength x a feature's direction and compare generations")
    steer.add_argument("feature_set", help=FEATURE_SET_HELP)
    steer.add_argument("feature", type=int)
    steer.add_argument("--prompt", required=True)
    steer.add_argument("--strength", type=float, default=8.0, help="added to the feature's value (default: 8)")
    steer.add_argument("--max-new-tokens", type=int, default=20)
    steer.add_argument("--device", default="auto", help="auto, cuda, mps, cpu (default: auto)")
    catalog_flag(steer)
    json_flag(steer)
    steer.set_defaults(handler=command_steer)
