"""`interp transcoder train|eval`: transcoders for every layer's MLP, trained in one pass and judged as a
replacement model. A trained set's latents are cached like an SAE's: `interp sae load DIR --hook mlp_in.L`."""

import argparse

from agent.cli.flags import (
    add_config_flags,
    catalog_flag,
    config_from_args,
    json_flag,
    progress_flag,
    quiet_transformers,
)
from tools.configs import TranscoderEvalConfig, TranscoderTrainConfig


def command_transcoder_train(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.views.terminal import json_text
    from tools.passes.transcoder_train import run_transcoder_train

    config = config_from_args(TranscoderTrainConfig, args)
    result = run_transcoder_train(config, progress=not args.no_progress)
    if args.json:
        print(json_text(result))
        return
    print(f"wrote {len(result.layers)} transcoders to {result.out} after {result.tokens:,} tokens x {config.epochs} "
          f"epochs in "
          f"{result.seconds / 60:.1f} min; the activation store took {result.store_bytes / 2**30:.2f} GiB while it "
          "lived")
    for stats in result.layers:
        print(f"  layer {stats.layer:>2}: training FVU {stats.fvu:.3f}, dead {stats.dead_fraction:.1%}")
    print(f"evaluate with: interp transcoder eval --transcoders {result.out}")


def command_transcoder_eval(args: argparse.Namespace) -> None:
    quiet_transformers()
    from rich.table import Table

    from agent.views.terminal import json_text, plain_console
    from tools.passes.transcoder_eval import run_transcoder_eval

    quality = run_transcoder_eval(config_from_args(TranscoderEvalConfig, args), args.catalog,
                                  progress=not args.no_progress)
    if args.json:
        print(json_text(quality))
        return
    table = Table(title=f"per layer: {quality.tokens:,} held-out next-token predictions; dead latents over "
                        f"{quality.dead_tokens:,} corpus tokens; lin = the layer's ridge fit, mean = its mean output")
    for column in ("layer", "FVU", "lin FVU", "L0", "dead", "loss", "zeroed", "recovered", "lin", "mean"):
        table.add_column(column, justify="right")
    for layer in quality.layers:
        table.add_row(str(layer.layer), f"{layer.fvu:.3f}", f"{layer.linear_fvu:.3f}", f"{layer.mean_l0:.1f}",
                      f"{layer.dead_fraction:.1%}", f"{layer.loss_spliced:.3f}", f"{layer.loss_zero_ablated:.3f}",
                      f"{layer.loss_recovered:.1%}", f"{layer.linear_recovered:.1%}", f"{layer.mean_recovered:.1%}")
    console = plain_console()
    console.print(table)
    whole = Table(title=f"every MLP of {len(quality.layers)} layers replaced at once")
    for column in ("replacement", "loss", "recovered"):
        whole.add_column(column, justify="right" if column != "replacement" else "left")
    for name, loss, share in (("clean", quality.loss_clean, 1.0),
                              ("transcoders", quality.loss_replacement, quality.loss_recovered),
                              ("linear only", quality.loss_linear_only, quality.linear_recovered),
                              ("mean-ablated", quality.loss_all_mean, quality.mean_recovered),
                              ("zeroed", quality.loss_all_zero_ablated, 0.0)):
        whole.add_row(name, f"{loss:.3f}", f"{share:.1%}")
    console.print(whole)


def register(commands: argparse._SubParsersAction) -> None:
    transcoder = commands.add_parser("transcoder", help="transcoders: train one per layer in one pass, evaluate a "
                                     "set as a replacement model")
    subcommands = transcoder.add_subparsers(dest="transcoder_command", required=True)
    train = subcommands.add_parser("train", help="train a TopK transcoder for every chosen layer's MLP: one model "
                                   "pass caches the activations, then each layer trains --epochs over them, resumably")
    add_config_flags(train, TranscoderTrainConfig, skip=("hook",))
    progress_flag(train)
    json_flag(train)
    train.set_defaults(handler=command_transcoder_train)
    evaluate = subcommands.add_parser("eval", help="per-layer FVU, L0, dead latents and loss recovered, and the "
                                      "replacement model's, each beside a linear fit and the mean output, on held-out "
                                      "tokens; recorded in the catalog")
    add_config_flags(evaluate, TranscoderEvalConfig, skip=("hook",))
    catalog_flag(evaluate)
    progress_flag(evaluate)
    json_flag(evaluate)
    evaluate.set_defaults(handler=command_transcoder_eval)
