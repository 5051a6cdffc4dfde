"""`interp features`: feature sets, a set's features, or one feature's examples, in the terminal."""

import argparse

from agent.cli.flags import FEATURE_SET_HELP, catalog_flag, json_flag


def command_features(args: argparse.Namespace) -> None:
    from agent.views.terminal import json_text, show_feature, show_feature_set, show_feature_sets
    from tools.catalog import Catalog

    with Catalog(args.catalog, read_only=True) as catalog:
        if args.json:
            print(json_text(features_data(catalog, args)))
        elif args.feature_set is None:
            show_feature_sets(catalog)
        elif args.feature is None:
            show_feature_set(catalog, args.feature_set, args.sort, args.n)
        else:
            show_feature(catalog, args.feature_set, args.feature, args.bucket, args.n)


def features_data(catalog, args: argparse.Namespace) -> object:
    """What the tables show, for machines: the sets; a set's top features; or one feature's statistics and
    examples (tokens with their activations)."""
    if args.feature_set is None:
        return catalog.feature_sets()
    feature_set = catalog.feature_set(args.feature_set)
    set_id = feature_set["feature_set_id"]
    if args.feature is None:
        return {"feature_set": feature_set, "features": catalog.top_features(set_id, args.sort, args.n)}
    stats = catalog.feature(set_id, args.feature)
    examples = catalog.examples(set_id, args.feature, bucket=args.bucket)[:args.n]
    return {"feature_set": set_id, "feature": args.feature, "stats": stats, "examples": [
        {key: example[key] for key in ("bucket", "rank", "quantile", "split", "max_act", "tokens", "acts")}
        for example in examples]}


def register(commands: argparse._SubParsersAction) -> None:
    features = commands.add_parser("features", help="list feature sets, a set's features, or one feature's examples")
    features.add_argument("feature_set", nargs="?", help=FEATURE_SET_HELP)
    features.add_argument("feature", nargs="?", type=int, help="feature index")
    features.add_argument("--bucket", choices=("top", "quantile", "random"), default="top")
    features.add_argument("-n", type=int, default=8, help="rows to show (default: 8)")
    features.add_argument("--sort", choices=("max_act", "density", "mean_act"), default="max_act")
    catalog_flag(features)
    json_flag(features)
    features.set_defaults(handler=command_features)
