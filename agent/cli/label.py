"""`interp label`, `search`, `export` and `explain-records`: labeling features and reading the labels back."""

import argparse
from pathlib import Path

from agent.cli.flags import (
    FEATURE_SET_HELP,
    add_config_flags,
    catalog_flag,
    config_from_args,
    field_help,
    progress_flag,
    quiet_transformers,
)
from agent.labeling.config import LabelConfig
from agent.neuronpedia.names import DEFAULT_CREATOR_ID
from tools.errors import InterpError


def command_label(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.labeling.pipeline import run_label
    from agent.views.terminal import dollars, print_token_usage, show_labels
    from tools.catalog import Catalog

    config = config_from_args(LabelConfig, args)
    if args.dry_run:
        from agent.labeling.dry_run import estimate_label_cost
        from agent.views.terminal import show_cost_estimate

        show_cost_estimate(estimate_label_cost(config, args.feature_set, args.catalog), config.prices())
        return
    result = run_label(config, args.feature_set, args.catalog, progress=not args.no_progress)
    explainer = result.labeler.explainer
    with Catalog(args.catalog, read_only=True) as catalog:
        rows = catalog.label_summary(result.feature_set_id, explainer.name, explainer.llm_name,
                                     explainer.prompt_hash, result.targets)
        usage_rows = catalog.token_usage(result.run_id)
    usage = result.usage
    minutes = result.seconds / 60
    prices = config.prices()
    print(f"labeled {result.labeled}, failed {result.failed} in {minutes:.1f} min; LLM tokens "
          f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion"
          f"{dollars(usage.prompt_tokens, usage.completion_tokens, prices)}; run {result.run_id}")
    print_token_usage(usage_rows, prices)
    show_labels(rows, f"{result.feature_set_id}: {explainer.name} explanations", config.scorer_names(),
                {scorer.name: scorer.llm_name for scorer in result.labeler.scorers})


def command_search(args: argparse.Namespace) -> None:
    if args.n <= 0:
        raise InterpError(f"-n must be positive, got {args.n}")
    quiet_transformers()
    from agent.labeling.search import search_explanations
    from agent.views.terminal import show_search

    rows, embedder = search_explanations(args.catalog, args.query, args.n, args.feature_set, args.embedder)
    show_search(rows, args.query, embedder, args.catalog)


def command_export(args: argparse.Namespace) -> None:
    from agent.export import export_parquet, require_labels
    from agent.neuronpedia.export import export_neuronpedia
    from tools.catalog import Catalog

    with Catalog(args.catalog, read_only=True) as catalog:
        require_labels(catalog)
        set_id = catalog.feature_set(args.feature_set)["feature_set_id"]
        if args.format == "parquet":
            for path in export_parquet(catalog, set_id, args.out):
                print(f"wrote {path}")
        else:
            counts = export_neuronpedia(catalog, set_id, args.out, args.creator_id, args.np_model_id,
                                        args.np_source_id)
            print(f"wrote a Neuronpedia dataset under {args.out}: " + ", ".join(f"{n:,} {k}" for k, n in counts.items())
                  + f"; its type rows are in config/ (add them to Neuronpedia's config before importing), and "
                  f"User '{args.creator_id}' must exist there")


def command_import_neuronpedia(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.neuronpedia.imports import import_neuronpedia

    result = import_neuronpedia(args.folder, args.catalog, args.feature_set, args.embedder, args.device)
    print(f"imported {result.written} of {result.read} explanations of Neuronpedia source {result.source} into "
          f"{result.feature_set_id} (run {result.run_id}); score them with `interp label {result.feature_set_id} "
          "--score-only neuronpedia:TYPE`")


def command_explain_records(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.labeling.explain_records import explain_records
    from agent.views.terminal import show_labels

    config = config_from_args(LabelConfig, args)
    rows = explain_records(config, Path(args.file), args.out)
    show_labels(rows, f"{args.file}: {config.explainer} explanations", config.scorer_names())
    if args.out:
        print(f"wrote {args.out}")


def register(commands: argparse._SubParsersAction) -> None:
    label = commands.add_parser("label", help="explain and score features with an LLM, resumably")
    label.add_argument("feature_set", help=FEATURE_SET_HELP)
    add_config_flags(label, LabelConfig)
    label.add_argument("--dry-run", action="store_true",
                       help="print the tokens (and, with --price-per-mtok, the cost) the run would take; send nothing")
    catalog_flag(label)
    progress_flag(label)
    label.set_defaults(handler=command_label)

    search = commands.add_parser("search", help="features whose explanation best matches a description")
    search.add_argument("query", help='what to look for, e.g. "names of cities"')
    search.add_argument("-n", type=int, default=10, help="results (default: 10)")
    search.add_argument("--feature-set", help="only this feature set")
    search.add_argument("--embedder", default="all-MiniLM-L6-v2", help=field_help(LabelConfig, "embedder"))
    catalog_flag(search)
    search.set_defaults(handler=command_search)

    export = commands.add_parser("export", help="write a feature set's labels as Parquet or Neuronpedia batches")
    export.add_argument("feature_set", help=FEATURE_SET_HELP)
    export.add_argument("--format", choices=("parquet", "neuronpedia"), default="parquet")
    export.add_argument("--out", type=Path, required=True, help="folder to write into")
    export.add_argument("--creator-id", default=DEFAULT_CREATOR_ID,
                        help="Neuronpedia User.id named as creator and author of every row (default: %(default)s, a "
                        "user an admin creates once)")
    export.add_argument("--np-model-id", help="Neuronpedia's id for the model (default: its known name, like "
                        "gpt2-small, else the model's name)")
    export.add_argument("--np-source-id", help="Neuronpedia source id: '{layer}-{set}' (like 6-res-jb), or '{layer}' "
                        "for raw neurons (default: from the hook and feature set)")
    catalog_flag(export)
    export.set_defaults(handler=command_export)

    imports = commands.add_parser("import", help="bring labels published elsewhere into the catalog")
    sources = imports.add_subparsers(dest="source", required=True, metavar="SOURCE")
    neuronpedia = sources.add_parser("neuronpedia", help="explanations from a Neuronpedia dataset export "
                                     "(explanations/batch-*.jsonl.gz), as explanations by neuronpedia:TYPE")
    neuronpedia.add_argument("folder", type=Path, help="the source's folder (holding explanations*/)")
    neuronpedia.add_argument("--feature-set", required=True,
                             help="the matching feature set: same model, same SAE (interp sae load)")
    neuronpedia.add_argument("--embedder", default="all-MiniLM-L6-v2", help=field_help(LabelConfig, "embedder"))
    neuronpedia.add_argument("--device", default="auto", help=field_help(LabelConfig, "device"))
    catalog_flag(neuronpedia)
    neuronpedia.set_defaults(handler=command_import_neuronpedia)

    records = commands.add_parser("explain-records",
                                  help="explain and score {tokens, values} activation records from any tool")
    records.add_argument("file", help="JSON or JSONL: features with 'records', or one list of records")
    records.add_argument("--out", type=Path, help="write the results as JSONL here")
    add_config_flags(records, LabelConfig, skip=("limit", "features"))
    records.set_defaults(handler=command_explain_records)
