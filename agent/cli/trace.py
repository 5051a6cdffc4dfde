"""`interp trace "PROMPT"`: which transcoder features make the model say what it says (an attribution graph),
checked against the real model and kept in the catalog."""

import argparse

from agent.cli.flags import (
    add_config_flags,
    catalog_flag,
    config_from_args,
    json_flag,
    progress_flag,
    quiet_transformers,
)
from tools.configs import TraceConfig

NODES_SHOWN = 15


def label_of(traced, node: int) -> str:
    entry = traced.labels.get(node)
    if entry is None:
        return ""
    score = next(iter(entry["scores"].items()), None)
    return entry["text"] + ("" if score is None else f" ({score[0]} {score[1]:.2f})")


def as_json(traced) -> dict:
    from agent.trace.summary import node_name

    graph, pruned = traced.graph, traced.pruned
    kept = pruned.nodes.nonzero().flatten().tolist()
    return {
        "graph_id": traced.graph_id, "prompt": graph.prompt, "tokens": graph.tokens,
        "targets": [{"label": t.label, "token_id": t.token_id, "probability": t.probability} for t in graph.targets],
        "active_features": graph.active_features, "feature_nodes": graph.n_features,
        "replacement_score": traced.replacement, "completeness_score": traced.completeness, "seconds": graph.seconds,
        "kept_nodes": len(kept), "kept_edges": int(pruned.edges.sum()),
        "check": None if traced.check is None else {
            "r": traced.check.r, "ci_low": traced.check.ci_low, "ci_high": traced.check.ci_high,
            "perturb_r": traced.check.perturb_r, "perturb_ci_low": traced.check.perturb_ci_low,
            "perturb_ci_high": traced.check.perturb_ci_high,
            "nodes": [{"node": node_name(graph, n), "predicted": p, "measured": m, "perturbed": q}
                      for n, p, m, q in zip(traced.check.nodes, traced.check.predicted, traced.check.measured,
                                            traced.check.perturbed, strict=True)]},
        "nodes": [{"node": node_name(graph, n), "kind": graph.node_kind(n), "influence": float(pruned.cumulative[n]),
                   "label": label_of(traced, n)} for n in kept if graph.node_kind(n) in ("feature", "error")],
    }


def command_trace(args: argparse.Namespace) -> None:
    quiet_transformers()
    from rich.table import Table

    from agent.trace.run import run_trace
    from agent.trace.summary import influence_share, influential_nodes, node_name
    from agent.views.terminal import json_text, plain_console
    from tools.attribution.influence import strongest_paths

    traced = run_trace(config_from_args(TraceConfig, args), args.prompt, args.target or [], args.versus,
                       args.catalog, progress=not args.no_progress)
    if args.json:
        print(json_text(as_json(traced)))
        return
    graph, pruned, console = traced.graph, traced.pruned, plain_console()
    console.print(f"graph {traced.graph_id}: {graph.prompt!r} -> "
                  + ", ".join(f"{t.label!r} {t.probability:.1%}" for t in graph.targets))
    console.print(f"{graph.active_features:,} active latents, {graph.n_features:,} feature nodes, "
                  f"{int(pruned.nodes.sum()):,} nodes and {int(pruned.edges.sum()):,} edges kept; "
                  f"{graph.seconds:.1f} s")
    console.print(f"replacement score {traced.replacement:.3f}; completeness score {traced.completeness:.3f}")
    if traced.check is not None:
        check = traced.check
        console.print(f"check: {len(check.nodes)} feature nodes, one at a time in the real model; predicted vs "
                      f"measured change of {graph.targets[0].label!r}:")
        console.print(f"  ablated (x0):   r = {check.r:.2f} [{check.ci_low:.2f}, {check.ci_high:.2f}]")
        console.print(f"  perturbed (x0.9, against 0.1 x the prediction): r = {check.perturb_r:.2f} "
                      f"[{check.perturb_ci_low:.2f}, {check.perturb_ci_high:.2f}]")
    console.print(f"strongest paths from the prompt through features to {graph.targets[0].label!r}:")
    for path in strongest_paths(graph, pruned):
        console.print("  " + " -> ".join(node_name(traced.graph, node) for node in path))
    table = Table(title="most influential nodes (influence: the node's share of all influence on the targets)")
    for column in ("node", "influence", "activation", "label"):
        table.add_column(column, justify="right" if column in ("influence", "activation") else "left")
    inner = influential_nodes(graph, pruned)
    for node in inner[:NODES_SHOWN]:
        activation = f"{float(graph.activations[node]):.2f}" if node < graph.n_features else ""
        table.add_row(node_name(graph, node), f"{influence_share(pruned, node):.1%}", activation,
                      label_of(traced, node))
    console.print(table)
    unlabeled = sorted({int(graph.features[n, 0]) for n in inner if n < graph.n_features and n not in traced.labels})
    if unlabeled:
        layer = unlabeled[0]
        cached = "" if layer in traced.feature_sets else \
            f"`interp sae load {args.transcoders} --hook mlp_in.{layer} --tokens 100000`, then "
        console.print(f"feature nodes without labels on layers {', '.join(map(str, unlabeled))}; label just the "
                      f"graph's nodes, layer by layer: {cached}`interp label mlp_in.{layer} --features-from-graph "
                      f"{traced.graph_id}`")


def register(commands: argparse._SubParsersAction) -> None:
    trace = commands.add_parser("trace", help="attribution graph: which transcoder features make the model say "
                                "the next token, checked by ablation in the real model")
    trace.add_argument("prompt", help="the text whose next token to explain")
    trace.add_argument("--target", action="append", metavar="TOKEN",
                       help="a token to explain (repeatable; mind the leading space); default: the top logits")
    trace.add_argument("--versus", metavar="TOKEN", help="explain the logit difference --target minus this token")
    add_config_flags(trace, TraceConfig)
    catalog_flag(trace)
    progress_flag(trace)
    json_flag(trace)
    trace.set_defaults(handler=command_trace)
