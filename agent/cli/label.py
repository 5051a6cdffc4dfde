"""`interp label`, `search`, `export` and `explain-records`: labeling features and reading the labels back."""

import argparse
import dataclasses
from pathlib import Path

from agent.cli.flags import (
    FEATURE_SET_HELP,
    DeprecatedFlag,
    add_config_flags,
    catalog_flag,
    config_from_args,
    field_help,
    ignored_config_flags,
    json_flag,
    progress_flag,
    quiet_transformers,
)
from agent.labeling.config import LabelConfig
from agent.neuronpedia.names import DEFAULT_CREATOR_ID
from tools.errors import InterpError


def graph_features(catalog_path: Path, feature_set: str, graph_ref: str) -> str:
    """The --features list of a graph's kept nodes in this feature set."""
    from tools.catalog import Catalog

    with Catalog(catalog_path, read_only=True) as catalog:
        graph = catalog.graph(graph_ref)
        set_id = catalog.feature_set(feature_set)["feature_set_id"]
        latents = catalog.graph_latents(graph["graph_id"], set_id)
    if not latents:
        raise InterpError(f"graph {graph['graph_id']} keeps no feature nodes of feature set {set_id}; label a layer "
                          "the graph's nodes are on (interp trace prints them)")
    return ",".join(str(latent) for latent in latents)


def command_label(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.labeling.pipeline import run_label
    from agent.views.terminal import dollars, print_token_usage, show_labels
    from evals.control import control_means, newest_control
    from tools.catalog import Catalog

    config = config_from_args(LabelConfig, args)
    if args.features_from_graph:
        config = dataclasses.replace(config, features=graph_features(args.catalog, args.feature_set,
                                                                     args.features_from_graph))
    if args.dry_run:
        from agent.labeling.dry_run import estimate_label_cost
        from agent.views.terminal import show_cost_estimate

        show_cost_estimate(estimate_label_cost(config, args.feature_set, args.catalog), config.prices())
        return
    from tools.ray_workers import RaySettings

    ray = RaySettings(args.ray, args.workers) if args.ray else None
    result = run_label(config, args.feature_set, args.catalog, progress=not args.no_progress, ray=ray)
    explainer = result.labeler.explainer
    with Catalog(args.catalog, read_only=True) as catalog:
        rows = catalog.label_summary(result.feature_set_id, explainer.name, explainer.llm_name,
                                     explainer.prompt_hash, result.targets)
        usage_rows = catalog.token_usage(result.run_id)
        control = control_means([c for c in newest_control(catalog, result.feature_set_id)
                                 if c["explainer"] == explainer.name])
    usage = result.usage
    minutes = result.seconds / 60
    prices = config.prices()
    if args.json:
        from agent.views.terminal import json_text

        print(json_text({"run_id": result.run_id, "feature_set": result.feature_set_id, "labeled": result.labeled,
                         "failed": result.failed, "seconds": result.seconds, "usage": usage, "features": rows}))
        return
    print(f"labeled {result.labeled}, failed {result.failed} in {minutes:.1f} min; LLM tokens "
          f"{usage.prompt_tokens:,} prompt + {usage.completion_tokens:,} completion"
          f"{dollars(usage.prompt_tokens, usage.completion_tokens, prices)}; run {result.run_id}")
    print_token_usage(usage_rows, prices)
    show_labels(rows, f"{result.feature_set_id}: {explainer.name} explanations", config.scorer_names(),
                {scorer.name: scorer.llm_name for scorer in result.labeler.scorers}, control)


def command_search(args: argparse.Namespace) -> None:
    if args.n <= 0:
        raise InterpError(f"-n must be positive, got {args.n}")
    from agent.labeling.search import search_explanations
    from agent.views.terminal import show_search

    rows, embedder = search_explanations(args.catalog, args.query, args.n, args.feature_set, args.embedder)
    if args.json:
        from agent.views.terminal import json_text

        print(json_text({"query": args.query, "embedder": embedder, "matches": rows}))
        return
    show_search(rows, args.query, embedder, args.catalog)


def command_export(args: argparse.Namespace) -> None:
    from agent.export import export_parquet, require_labels
    from agent.neuronpedia.export import export_neuronpedia
    from tools.catalog import Catalog

    if args.feature_set == "graph":
        export_graph_files(args)
        return
    if args.graph is not None:
        raise InterpError(f"export takes one feature set; got '{args.feature_set}' and '{args.graph}' (a graph is "
                          "`interp export graph ID --format neuronpedia`)")
    with Catalog(args.catalog, read_only=True) as catalog:
        require_labels(catalog)
        set_id = catalog.feature_set(args.feature_set)["feature_set_id"]
        if args.format == "parquet":
            for path in export_parquet(catalog, set_id, args.out):
                print(f"wrote {path}")
        elif args.format == "neuronpedia-upload":
            export_upload_bodies(args, catalog, set_id)
        else:
            counts = export_neuronpedia(catalog, set_id, args.out, args.creator_id, args.np_model_id,
                                        args.np_source_id)
            print(f"wrote a Neuronpedia dataset under {args.out}: " + ", ".join(f"{n:,} {k}" for k, n in counts.items())
                  + f"; its type rows are in config/ (add them to Neuronpedia's config before importing), and "
                  f"User '{args.creator_id}' must exist there")


def export_graph_files(args: argparse.Namespace) -> None:
    """`interp export graph ID --format neuronpedia`: the graph JSON and its feature nodes' detail files."""
    from agent.neuronpedia.graph import export_graph
    from agent.neuronpedia.names import np_model_id
    from tools.catalog import Catalog

    if args.graph is None:
        raise InterpError("export graph needs a graph id (or 'latest'): interp export graph ID --format neuronpedia")
    if args.format != "neuronpedia":
        raise InterpError(f"a graph exports as --format neuronpedia, not '{args.format}'")
    with Catalog(args.catalog, read_only=True) as catalog:
        graph = catalog.graph(args.graph)
        model = catalog.model(graph["model_id"])
        logits_of = None if args.no_logits else graph_logits(args, catalog, graph)
        counts = export_graph(catalog, graph["graph_id"], args.out, np_model_id(model["name"], args.np_model_id),
                              args.feature_base_url, logits_of)
    print(f"wrote graph {graph['graph_id']} for Neuronpedia under {args.out}: "
          + ", ".join(f"{n:,} {k}" for k, n in counts.items()))


def graph_logits(args: argparse.Namespace, catalog, graph: dict):
    """(layer, latent) -> the 10 tokens a latent's decoder row raises and lowers most through the unembedding."""
    quiet_transformers()
    from tools.experiments.interventions import logit_tokens
    from tools.features import resolve_features
    from tools.model.subject import load_subject_model

    model_name = catalog.model(graph["model_id"])["name"]
    loaded: dict = {}

    def logits_of(layer: int, latent: int) -> tuple[list[str], list[str]]:
        """Loads the model on its first call: graphs traced since schema 12 carry their logits."""
        if "subject" not in loaded:
            loaded["subject"] = load_subject_model(model_name, args.device)
        subject = loaded["subject"]
        if layer not in loaded:
            loaded[layer] = resolve_features(f"mlp_in.{layer}", graph["transcoders_path"], subject)
        return logit_tokens(subject, loaded[layer], latent, 10)

    return logits_of


def export_upload_bodies(args: argparse.Namespace, catalog, set_id: str) -> None:
    from agent.neuronpedia.names import np_model_id, np_source
    from agent.neuronpedia.upload import Shown, direct_logits, export_upload

    feature_set = catalog.feature_set(set_id)
    model_id = np_model_id(feature_set["model"], args.np_model_id)
    source_id, _ = np_source(feature_set, args.np_source_id)
    logits = None
    if not args.no_logits:
        quiet_transformers()
        from agent.labeling.backends import model_side

        logits = direct_logits(*model_side(args.catalog, set_id, args.device))
    summary = export_upload(catalog, set_id, args.out, model_id, source_id, logits, args.np_method_name,
                            args.np_explainer_model, args.np_features_per_body,
                            Shown(args.np_top, args.np_per_quantile))
    print(f"wrote {summary.bodies} upload-batch bodies for {model_id}/{source_id} under {args.out}: "
          f"{summary.features:,} features, {summary.explanations:,} explanations, {summary.activations:,} "
          f"activations" + (f"; {len(summary.never_active):,} features never fired and are left out (the route "
                            "needs an activation)" if summary.never_active else "")
          + (f"; {summary.shortened} explanations cut to 512 characters" if summary.shortened else "")
          + f". Post them with `interp publish neuronpedia {args.out}`")


def command_publish_neuronpedia(args: argparse.Namespace) -> None:
    from agent.neuronpedia.publish import publish

    result = publish(args.folder, args.url, args.api_key_env, args.attempts)
    print(f"posted {result.posted} bodies ({result.features:,} features) to {args.url}; {result.skipped} "
          "accepted before were not posted again")


def command_import_neuronpedia(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.neuronpedia.imports import import_neuronpedia

    if args.old_feature_set is not None:  # the old `import neuronpedia FOLDER --feature-set SET`
        if args.folder is not None:
            raise InterpError(f"give the feature set once: `interp import neuronpedia {args.old_feature_set} "
                              "FOLDER`, not also --feature-set")
        args.feature_set, args.folder = args.old_feature_set, Path(args.feature_set)
    if args.folder is None:
        raise InterpError("interp import neuronpedia needs a feature set and a folder: "
                          "`interp import neuronpedia SET FOLDER`")
    result = import_neuronpedia(args.folder, args.catalog, args.feature_set, args.embedder, args.device,
                                not args.no_activation_check)
    if result.agreement is not None:
        print(result.agreement.describe())
    print(f"imported {result.written} of {result.read} explanations of Neuronpedia source {result.source} into "
          f"{result.feature_set_id} (run {result.run_id}); score them with `interp label {result.feature_set_id} "
          "--score-only neuronpedia:TYPE`")


def command_import_graph(args: argparse.Namespace) -> None:
    from agent.trace.imports import import_graph

    graph_id, nodes, links = import_graph(args.file, args.catalog, args.transcoders)
    print(f"imported graph {graph_id} ({nodes:,} nodes, {links:,} links) from {args.file}; see it with `interp serve` "
          f"at /graphs/{graph_id}, label its nodes with `interp label mlp_in.L --features-from-graph {graph_id}`")


def command_explain_records(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.labeling.explain_records import explain_records
    from agent.views.terminal import show_labels

    config = config_from_args(LabelConfig, args)
    rows = explain_records(config, Path(args.file), args.out, progress=not args.no_progress)
    if args.json:
        from agent.views.terminal import json_text

        print(json_text(rows))
        return
    show_labels(rows, f"{args.file}: {config.explainer} explanations", config.scorer_names())
    if args.out:
        print(f"wrote {args.out}")


def register(commands: argparse._SubParsersAction) -> None:
    label = commands.add_parser("label", help="explain and score features with an LLM, resumably")
    label.add_argument("feature_set", help=FEATURE_SET_HELP)
    add_config_flags(label, LabelConfig)
    label.add_argument("--ray", nargs="?", const="auto", metavar="ADDRESS",
                       help="label on Ray actors, each with its own LLM backends: 'auto' (this machine) or a cluster "
                       "address; this process stays the catalog's one writer (pip install -e '.[ray]')")
    label.add_argument("--workers", type=int, default=2, help="Ray actors (with --ray; default: 2)")
    label.add_argument("--features-from-graph", metavar="GRAPH",
                       help="label just the feature nodes an attribution graph keeps in this feature set (a graph id "
                       "from `interp trace`, or 'latest')")
    label.add_argument("--dry-run", action="store_true",
                       help="print the tokens (and, with --price-per-mtok, the cost) the run would take; send nothing")
    catalog_flag(label)
    progress_flag(label)
    json_flag(label)
    label.set_defaults(handler=command_label)

    search = commands.add_parser("search", help="features whose explanation best matches a description")
    search.add_argument("query", help='what to look for, e.g. "names of cities"')
    search.add_argument("-n", type=int, default=10, help="results (default: 10)")
    search.add_argument("--feature-set", help="only this feature set")
    search.add_argument("--embedder", default="all-MiniLM-L6-v2", help=field_help(LabelConfig, "embedder"))
    catalog_flag(search)
    json_flag(search)
    search.set_defaults(handler=command_search)

    export = commands.add_parser("export", help="write a feature set's labels as Parquet or Neuronpedia batches, or "
                                 "an attribution graph as Neuronpedia's graph JSON (`export graph ID`)")
    export.add_argument("feature_set", help=FEATURE_SET_HELP + "; or the word 'graph' followed by a graph id")
    export.add_argument("graph", nargs="?", help="with 'graph': the graph id from `interp trace` (or 'latest')")
    export.add_argument("--format", choices=("parquet", "neuronpedia", "neuronpedia-upload"), default="parquet",
                        help="parquet tables; neuronpedia: the dataset folder their admin import loads; "
                        "neuronpedia-upload: bodies of their public POST /api/feature/upload-batch")
    export.add_argument("--out", type=Path, required=True, help="folder to write into")
    export.add_argument("--creator-id", default=DEFAULT_CREATOR_ID,
                        help="Neuronpedia User.id named as creator and author of every row (default: %(default)s, a "
                        "user an admin creates once)")
    export.add_argument("--np-model-id", help="Neuronpedia's id for the model (default: its known name, like "
                        "gpt2-small, else the model's name)")
    export.add_argument("--np-source-id", help="Neuronpedia source id: '{layer}-{set}' (like 6-res-jb), or '{layer}' "
                        "for raw neurons (default: from the hook and feature set)")
    export.add_argument("--np-method-name", help="neuronpedia-upload: send every explanation under this existing "
                        "Neuronpedia ExplanationType (default: interp-agent_<explainer>, which must exist there)")
    export.add_argument("--np-explainer-model", help="neuronpedia-upload: send every explanation under this existing "
                        "ExplanationModelType (default: the explainer's LLM, like gpt-4o-mini)")
    export.add_argument("--np-features-per-body", type=int, default=128,
                        help="neuronpedia-upload: features a body (at most 128, the route's limit; fewer for smaller "
                        "requests)")
    export.add_argument("--np-top", type=int, default=20,
                        help="neuronpedia-upload: top activations a feature (default: %(default)s)")
    export.add_argument("--np-per-quantile", type=int, default=3,
                        help="neuronpedia-upload: activations from each quantile bin (default: %(default)s)")
    export.add_argument("--no-logits", action="store_true", help="neuronpedia-upload and graphs: leave out the top "
                        "and bottom logits (they need the subject model loaded)")
    export.add_argument("--feature-base-url", help="graphs: where the feature JSONs will be served from (Neuronpedia's "
                        "feature_json_base_url)")
    export.add_argument("--device", default="auto", help=field_help(LabelConfig, "device"))
    catalog_flag(export)
    export.set_defaults(handler=command_export)

    publish = commands.add_parser("publish", help="post exported labels to a public service")
    services = publish.add_subparsers(dest="service", required=True, metavar="SERVICE")
    neuronpedia_post = services.add_parser(
        "neuronpedia", help="post `interp export --format neuronpedia-upload` bodies to Neuronpedia, resumably")
    neuronpedia_post.add_argument("folder", type=Path, help="the folder the upload export wrote")
    neuronpedia_post.add_argument("--url", default="https://www.neuronpedia.org",
                                  help="Neuronpedia's base URL (default: %(default)s)")
    neuronpedia_post.add_argument("--api-key-env", default="NEURONPEDIA_API_KEY",
                                  help="environment variable holding your API key, which is never written down "
                                  "(default: %(default)s)")
    neuronpedia_post.add_argument("--attempts", type=int, default=5,
                                  help="tries a body gets on timeouts, 429 and 5xx (default: %(default)s)")
    neuronpedia_post.set_defaults(handler=command_publish_neuronpedia)

    imports = commands.add_parser("import", help="bring labels or attribution graphs published elsewhere into the "
                                  "catalog")
    sources = imports.add_subparsers(dest="source", required=True, metavar="SOURCE")
    neuronpedia = sources.add_parser("neuronpedia", help="explanations from a Neuronpedia dataset export "
                                     "(explanations/batch-*.jsonl.gz), as explanations by neuronpedia:TYPE")
    neuronpedia.add_argument("feature_set", help="the matching feature set: same model, same SAE (interp sae load); "
                             + FEATURE_SET_HELP)
    neuronpedia.add_argument("folder", type=Path, nargs="?", help="the source's folder (holding explanations*/)")
    neuronpedia.add_argument("--feature-set", dest="old_feature_set", action=DeprecatedFlag,
                             instead="write `interp import neuronpedia SET FOLDER`")
    neuronpedia.add_argument("--no-activation-check", action="store_true",
                             help="import even when the export's activations disagree with the feature set's "
                             "(checked by rerunning our model on their text when activations*/ is present)")
    neuronpedia.add_argument("--embedder", default="all-MiniLM-L6-v2", help=field_help(LabelConfig, "embedder"))
    neuronpedia.add_argument("--device", default="auto", help=field_help(LabelConfig, "device"))
    catalog_flag(neuronpedia)
    neuronpedia.set_defaults(handler=command_import_neuronpedia)

    graph = sources.add_parser("graph", help="an attribution graph made elsewhere: Neuronpedia's graph JSON, as "
                               "circuit-tracer's create_graph_files writes it")
    graph.add_argument("file", type=Path, help="the graph's .json")
    graph.add_argument("--transcoders", help="the transcoder set it was made with, so its nodes join the feature "
                       "sets cached from that set")
    catalog_flag(graph)
    graph.set_defaults(handler=command_import_graph)

    records = commands.add_parser("explain-records",
                                  help="explain and score {tokens, values} activation records from any tool")
    records.add_argument("file", help="JSON or JSONL: features with 'records', or one list of records")
    records.add_argument("--out", type=Path, help="write the results as JSONL here")
    add_config_flags(records, LabelConfig, skip=("limit", "features", "score_only", "price_per_mtok"))
    ignored_config_flags(records, LabelConfig, ("score_only", "price_per_mtok"), "explain-records")
    progress_flag(records)
    json_flag(records)
    records.set_defaults(handler=command_explain_records)
