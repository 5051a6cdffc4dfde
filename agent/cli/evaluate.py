"""`interp eval planted|control|compare`: judging explainers and scorers; `interp eval organisms plant`: model
organisms with known hidden behaviours, for judging the audit."""

import argparse

from agent.cli.flags import (
    FEATURE_SET_HELP,
    add_config_flags,
    catalog_flag,
    config_from_args,
    progress_flag,
    quiet_transformers,
)
from agent.labeling.config import LabelConfig
from tools.configs import OrganismConfig


def command_eval_planted(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.evaluate.planted import run_planted_eval
    from agent.views.terminal import json_text, show_eval

    config = config_from_args(LabelConfig, args)
    explainers = [name.strip() for name in args.explainers.split(",") if name.strip()]
    result = run_planted_eval(config, explainers, args.catalog, args.feature_set, args.seed,
                              progress=not args.no_progress)
    if args.json:
        print(json_text(result.rows))
    else:
        show_eval(result.rows, f"{result.set_id}: explainers and scorers on planted features (run {result.run_id})")


def command_eval_control(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.evaluate.control import run_control
    from agent.views.terminal import json_text, show_control

    result = run_control(config_from_args(LabelConfig, args), args.feature_set, args.catalog, args.sample,
                         args.model_seed, args.seed, progress=not args.no_progress)
    if args.json:
        print(json_text(result))
    else:
        show_control(result.comparisons, f"{result.set_id} against its random-model control {result.control_set_id}: "
                                         f"{len(result.features)} features labeled by {result.explainer} on each "
                                         f"side (run {result.run_id})")


def command_eval_compare(args: argparse.Namespace) -> None:
    from agent.views.terminal import json_text, show_eval
    from evals.compare import run_compare

    scorers = [name.strip() for name in args.scorers.split(",") if name.strip()]
    result = run_compare(args.catalog, args.feature_set, args.a, args.b, scorers, args.seed)
    if args.json:
        print(json_text(result.rows))
    else:
        show_eval(result.rows, f"{result.set_id}: {result.names[0]} vs {result.names[1]}, paired by feature "
                               f"(run {result.run_id})")


def command_plant_organisms(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.views.terminal import json_text, show_organisms
    from evals.organisms.plant import plant_suite

    planted = plant_suite(config_from_args(OrganismConfig, args), progress=not args.no_progress)
    if args.json:
        print(json_text({"out": str(planted.out), "organisms": planted.organisms}))
    else:
        show_organisms(planted.organisms, f"{len(planted.organisms)} organisms in {planted.out} "
                                          f"({planted.seconds / 60:.1f} min); the answers are in "
                                          f"{planted.out / 'sealed'}, which the audit never reads")


def register(commands: argparse._SubParsersAction) -> None:
    evals = commands.add_parser("eval", help="judge explainers and scorers: planted features, a random-model "
                                          "control, paired comparisons")
    eval_commands = evals.add_subparsers(dest="eval_command", required=True)
    planted = eval_commands.add_parser("planted", help="explainers and scorers on planted features with known "
                                                       "meanings (cache them first: interp cache --hook planted)")
    planted.add_argument("feature_set", nargs="?", default="planted", help="the planted feature set (default: planted)")
    planted.add_argument("--explainers", default="oneshot,token-stats",
                         help="comma-separated explainers to judge (default: oneshot,token-stats)")
    planted.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    planted.add_argument("--json", action="store_true", help="print the rows as JSON")
    progress_flag(planted, "no progress bars")
    add_config_flags(planted, LabelConfig, skip=("explainer",))
    catalog_flag(planted)
    planted.set_defaults(handler=command_eval_planted)
    control = eval_commands.add_parser("control", help="the set's scores beside a seeded random copy of its model's, "
                                                       "same explainer, scorers and cache recipe")
    control.add_argument("feature_set", help=FEATURE_SET_HELP)
    control.add_argument("--sample", type=int, default=64,
                         help="features labeled on each side, the same indices, drawn from those live in both "
                              "(default: 64)")
    control.add_argument("--model-seed", type=int, default=0,
                         help="seed of the random copy's weights (default: 0): the model is random:SEED:MODEL")
    control.add_argument("--seed", type=int, default=0, help="seed of the sample and the bootstrap (default: 0)")
    control.add_argument("--json", action="store_true", help="print the comparison as JSON")
    progress_flag(control, "no progress bars")
    add_config_flags(control, LabelConfig, skip=("features", "limit", "score_only"))
    catalog_flag(control)
    control.set_defaults(handler=command_eval_control)
    compare = eval_commands.add_parser("compare", help="two labeling configurations on the same features, paired")
    compare.add_argument("feature_set", help=FEATURE_SET_HELP)
    compare.add_argument("a", help="a configuration: explainer name, or NAME@part-of-its-LLM")
    compare.add_argument("b", help="the other configuration")
    compare.add_argument("--scorers", default="simulation,detection,fuzzing,embedding,intervention",
                         help="scorers whose scores to compare (default: all five; those neither labeling ran are "
                              "left out)")
    compare.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: 0)")
    compare.add_argument("--json", action="store_true", help="print the rows as JSON")
    catalog_flag(compare)
    compare.set_defaults(handler=command_eval_compare)
    organisms = eval_commands.add_parser("organisms", help="model organisms: hidden behaviours planted in the "
                                                           "subject by LoRA, with sealed answers")
    organism_commands = organisms.add_subparsers(dest="organisms_command", required=True)
    plant = organism_commands.add_parser("plant", help="fine-tune a suite of organisms and controls, measure that "
                                                       "each plant took, and seal the answers")
    plant.add_argument("--json", action="store_true", help="print the manifest's entries as JSON")
    progress_flag(plant, "no progress bars")
    add_config_flags(plant, OrganismConfig, skip=("hook", "window", "bos"))
    plant.set_defaults(handler=command_plant_organisms)
