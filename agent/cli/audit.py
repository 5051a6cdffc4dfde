"""`interp audit`: where a model carries flagged concepts, with causal checks and a report."""

import argparse
import contextlib
import sys
from pathlib import Path

from agent.cli.flags import (
    ENDPOINT_FIELDS,
    FEATURE_SET_HELP,
    LOCAL_MODEL_FIELDS,
    DeprecatedFlag,
    add_config_flags,
    catalog_flag,
    config_from_args,
    ignored_config_flags,
    json_flag,
    progress_flag,
    quiet_transformers,
)
from agent.labeling.config import LabelConfig
from tools.errors import InterpError
from tools.text import visible

AUDIT_FIELDS = ENDPOINT_FIELDS + LOCAL_MODEL_FIELDS


def set_and_concepts(args: argparse.Namespace) -> tuple[str, str]:
    """`interp audit SET CONCEPTS`, or the old `interp audit CONCEPTS --feature-set SET`."""
    if args.old_feature_set is not None:
        if args.concepts is not None:
            raise InterpError(f"give the feature set once: `interp audit {args.old_feature_set} CONCEPTS`, "
                              f"not also --feature-set")
        return args.old_feature_set, args.feature_set
    if args.concepts is None:
        raise InterpError("interp audit needs a feature set and a concepts file: `interp audit SET CONCEPTS.yaml`")
    return args.feature_set, args.concepts


def command_audit(args: argparse.Namespace) -> None:
    quiet_transformers()
    from agent.audit.run import run_audit

    def report(audit) -> None:
        best = audit.candidates[0] if audit.candidates else None
        lead = f"; top candidate feature {best.feature} ({best.verdict}, confidence {best.confidence:.2f})" if best \
            else ""
        print(f"{visible(audit.concept.name)}: {audit.verdict} (probe AUROC {audit.probe.auroc:.2f} "
              f"[{audit.probe.ci_low:.2f}, {audit.probe.ci_high:.2f}]){lead}", flush=True)

    feature_set, concepts = set_and_concepts(args)
    config = config_from_args(LabelConfig, args)
    # With --json the per-concept lines are progress (stderr); stdout carries the JSON.
    with contextlib.redirect_stdout(sys.stderr) if args.json else contextlib.nullcontext():
        result = run_audit(config, Path(concepts), feature_set, args.catalog, Path(args.out), args.seed,
                           on_concept=report, progress=not args.no_progress)
    if args.json:
        from agent.views.terminal import json_text

        print(json_text({"run_id": result.run_id, "report_md": result.report_md, "report_html": result.report_html,
                         "concepts": [{"concept": audit.concept.name, "verdict": audit.verdict,
                                       "probe_auroc": audit.probe.auroc,
                                       "probe_interval": [audit.probe.ci_low, audit.probe.ci_high],
                                       "candidates": [{"feature": c.feature, "verdict": c.verdict,
                                                       "confidence": c.confidence} for c in audit.candidates]}
                                      for audit in result.audits]}))
        return
    print(f"run {result.run_id}: wrote {result.report_md} and {result.report_html}")


def register(commands: argparse._SubParsersAction) -> None:
    audit = commands.add_parser("audit", help="audit a feature set for flagged concepts: search, probes, causal "
                                              "checks, verdicts, and a Markdown + HTML report")
    audit.add_argument("feature_set", help=FEATURE_SET_HELP)
    audit.add_argument("concepts", nargs="?", help="concepts YAML file (see examples/concepts.yaml)")
    audit.add_argument("--feature-set", dest="old_feature_set", action=DeprecatedFlag,
                       instead="write `interp audit SET CONCEPTS`")
    audit.add_argument("--out", default="audit-report", help="folder for audit.md, audit.html and "
                                                             "concepts.resolved.yaml (default: audit-report)")
    audit.add_argument("--seed", type=int, default=0, help="cross-validation and bootstrap seed (default: 0)")
    add_config_flags(audit, LabelConfig, only=AUDIT_FIELDS)
    ignored_config_flags(audit, LabelConfig, ("judge_batch", "score_only", "price_per_mtok"), "audit")
    json_flag(audit)
    progress_flag(audit)
    catalog_flag(audit)
    audit.set_defaults(handler=command_audit)
