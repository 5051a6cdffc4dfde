"""`interp audit`: where a model carries flagged concepts, with causal checks and a report."""

import argparse
from pathlib import Path

from agent.cli.flags import FEATURE_SET_HELP, add_config_flags, catalog_flag, config_from_args, quiet_transformers
from agent.labeling.config import LabelConfig
from tools.text import visible


def command_audit(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.audit.run import run_audit

    def report(audit) -> None:
        best = audit.candidates[0] if audit.candidates else None
        lead = f"; top candidate feature {best.feature} ({best.verdict}, confidence {best.confidence:.2f})" if best \
            else ""
        print(f"{visible(audit.concept.name)}: {audit.verdict} (probe AUROC {audit.probe.auroc:.2f} "
              f"[{audit.probe.ci_low:.2f}, {audit.probe.ci_high:.2f}]){lead}", flush=True)

    config = config_from_args(LabelConfig, args)
    result = run_audit(config, Path(args.concepts), args.feature_set, args.catalog, Path(args.out), args.seed,
                       on_concept=report)
    print(f"run {result.run_id}: wrote {result.report_md} and {result.report_html}")


def register(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="audit a feature set for flagged concepts: search, probes, causal "
                                              "checks, verdicts, and a Markdown + HTML report")
    audit.add_argument("concepts", help="concepts YAML file (see examples/concepts.yaml)")
    audit.add_argument("--feature-set", required=True, help=FEATURE_SET_HELP)
    audit.add_argument("--out", default="audit-report", help="folder for audit.md, audit.html and "
                                                             "concepts.resolved.yaml (default: audit-report)")
    audit.add_argument("--seed", type=int, default=0, help="cross-validation and bootstrap seed (default: 0)")
    add_config_flags(audit, LabelConfig, skip=("explainer", "limit", "features", "n_top", "n_quantile", "scorers",
                                               "simulator", "score_active", "score_random", "concurrency"))
    catalog_flag(audit)
    audit.set_defaults(handler=command_audit)
