"""`interp features`: feature sets, a set's features, or one feature's examples, in the terminal."""

import argparse

from agent.cli.flags import FEATURE_SET_HELP, catalog_flag


def command_features(args: argparse.Namespace) -> None:
    from agent.views.terminal import show_feature, show_feature_set, show_feature_sets
    from tools.catalog import Catalog

    with Catalog(args.catalog, read_only=True) as catalog:
        if args.feature_set is None:
            show_feature_sets(catalog)
        elif args.feature is None:
            show_feature_set(catalog, args.feature_set, args.sort, args.n)
        else:
            show_feature(catalog, args.feature_set, args.feature, args.bucket, args.n)


def register(commands: argparse._SubParsersAction) -> None:
    features = commands.add_parser("features", help="list feature sets, a set's features, or one feature's examples")
    features.add_argument("feature_set", nargs="?", help=FEATURE_SET_HELP)
    features.add_argument("feature", nargs="?", type=int, help="feature index")
    features.add_argument("--bucket", choices=("top", "quantile", "random"), default="top")
    features.add_argument("-n", type=int, default=8, help="rows to show (default: 8)")
    features.add_argument("--sort", choices=("max_act", "density", "mean_act"), default="max_act")
    catalog_flag(features)
    features.set_defaults(handler=command_features)
