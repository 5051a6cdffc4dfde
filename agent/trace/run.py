"""`interp trace`: an attribution graph of a prompt, pruned, scored, checked against the real model, joined to
its features' labels, and kept in the catalog."""

import dataclasses
import hashlib
import json
import logging
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from evals.stats import bootstrap_interval, moments, pearson, pooled_pearson
from tools.attribution.attribute import attribute
from tools.attribution.check import ABLATION, PERTURBATION, measured_changes
from tools.attribution.graph import Graph
from tools.attribution.influence import Pruned, ablation_effects, graph_scores, prune
from tools.catalog import Catalog, check_catalog_path
from tools.configs import TraceConfig
from tools.errors import InterpError
from tools.experiments.interventions import decoder_logit_tokens
from tools.model.subject import load_subject_model, sha256_folder_weights
from tools.passes.cache import model_row, package_versions
from tools.sae.transcoders import load_transcoder_set

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Check:
    """Feature nodes ablated one at a time in the real model: the graph's predicted change of the first target
    beside the measured one, and their correlation with a bootstrap interval over nodes; and the same nodes
    scaled by 0.9 (`perturbed`), against 0.1 x the prediction."""

    nodes: list[int]
    predicted: list[float]
    measured: list[float]
    r: float
    ci_low: float
    ci_high: float
    perturbed: list[float]
    perturb_r: float
    perturb_ci_low: float
    perturb_ci_high: float


@dataclass(frozen=True)
class Traced:
    graph_id: str
    graph: Graph
    pruned: Pruned
    replacement: float
    completeness: float
    check: Check | None
    feature_sets: dict[int, str]
    """The cached feature set of each layer, where there is one."""
    labels: dict[int, dict]
    """Feature node -> its latest explanation {'text', 'scores'}, where its layer's set is labeled."""


def correlation(predicted: list[float], measured: list[float]) -> tuple[float, float, float]:
    """Pearson r with its bootstrap interval over nodes; all nan below 3 nodes."""
    if len(predicted) < 3:
        return float("nan"), float("nan"), float("nan")
    pairs = np.stack([moments([p], [m]) for p, m in zip(predicted, measured, strict=True)])
    low, high = bootstrap_interval(lambda counts: pooled_pearson(pairs, counts), len(pairs))
    return pearson(predicted, measured), low, high


LOGIT_TOKENS = 10
"""Top and bottom decoder logits kept per feature node, as circuit-tracer's feature files carry."""


def feature_logits(subject, transcoders: dict, graph: Graph, nodes: list[int]) -> dict[int, tuple[list, list]]:
    """Each of these feature nodes' top and bottom `LOGIT_TOKENS` decoder logits through the unembedding, for
    the graph page's feature detail and the export (so neither needs the model). A latent kept at several
    positions is read through the unembedding once."""
    latent_of = {node: (int(graph.features[node][0]), int(graph.features[node][2])) for node in nodes
                 if graph.node_kind(node) == "feature"}
    latents = sorted(set(latent_of.values()))
    if not latents:
        return {}
    directions = torch.stack([transcoders[layer].W_dec[latent] for layer, latent in latents]).detach()
    found = dict(zip(latents, decoder_logit_tokens(subject, directions, LOGIT_TOKENS), strict=True))
    return {node: found[latent] for node, latent in latent_of.items()}


def node_rows(graph: Graph, pruned: Pruned, feature_sets: dict[int, str], check: Check | None,
              logits: dict[int, tuple[list, list]] | None = None) -> list[dict]:
    logits = logits or {}
    checked = {} if check is None else {node: (p, m, q) for node, p, m, q in zip(
        check.nodes, check.predicted, check.measured, check.perturbed, strict=True)}
    rows = []
    for node in sorted(set(pruned.nodes.nonzero().flatten().tolist()) | set(checked)):
        kind = graph.node_kind(node)
        row: dict = {"node": node, "kind": kind, "influence": float(pruned.cumulative[node])}
        if kind == "feature":
            layer, position, latent = (int(v) for v in graph.features[node])
            row |= {"layer": layer, "position": position, "feature": latent,
                    "value": float(graph.activations[node]), "feature_set_id": feature_sets.get(layer)}
            if node in logits:
                row |= {"top_logits": logits[node][0], "bottom_logits": logits[node][1]}
        elif kind == "error":
            layer, position = divmod(node - graph.n_features, graph.n_positions)
            row |= {"layer": layer, "position": position}
        elif kind == "token":
            position = node - graph.token_index(0)
            row |= {"position": position, "feature": graph.token_ids[position]}
        else:
            target = graph.targets[node - graph.logit_index(0)]
            row |= {"position": graph.n_positions - 1, "feature": target.token_id, "value": target.probability}
        if node in checked:
            row |= {"check_predicted": checked[node][0], "check_measured": checked[node][1],
                    "check_perturbed": checked[node][2]}
        rows.append(row)
    return rows


def edge_rows(graph: Graph, pruned: Pruned) -> list[dict]:
    targets, sources = pruned.edges.nonzero(as_tuple=True)
    weights = graph.adjacency[targets, sources]
    return [{"source": int(s), "target": int(t), "weight": float(w)}
            for t, s, w in zip(targets.tolist(), sources.tolist(), weights.tolist(), strict=True)]


def run_trace(config: TraceConfig, prompt: str, targets: list[str], versus: str | None, catalog_path: Path,
              progress: bool = False) -> Traced:
    config.validate()
    catalog_path = Path(catalog_path)
    check_catalog_path(catalog_path)
    if not prompt.strip():
        raise InterpError("the prompt is empty; trace needs text whose next token to explain")
    folder = Path(config.transcoders)
    transcoders = load_transcoder_set(folder)
    subject = load_subject_model(config.model, config.device, config.dtype)
    width = int(subject.model.config.hidden_size)
    wrong = {layer: t.d_in for layer, t in transcoders.items() if t.d_in != width or t.d_out != width}
    if wrong:
        raise InterpError(f"transcoders in '{folder}' read {sorted(set(wrong.values()))} dimensions; {config.model} "
                          f"has {width}")
    set_sha256 = sha256_folder_weights(folder)
    settings = dataclasses.asdict(config) | {"prompt": prompt, "targets": targets, "versus": versus}
    config_hash = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
    with Catalog.run(catalog_path, "trace", settings, config_hash, None, package_versions()) as run_id:
        graph = attribute(subject, transcoders, prompt, targets, versus, config.max_targets, config.cover,
                          config.max_features, config.batch_size, progress=progress)
        replacement, completeness = graph_scores(graph)
        pruned = prune(graph, config.node_threshold, config.edge_threshold)
        check = None
        if config.check and graph.n_features:
            ranked = pruned.influence[:graph.n_features].argsort(descending=True)[:config.check]
            nodes = ranked.tolist()
            predicted = ablation_effects(graph, ranked).tolist()
            measured = measured_changes(subject, transcoders, graph, nodes, ABLATION)
            perturbed = measured_changes(subject, transcoders, graph, nodes, PERTURBATION)
            check = Check(nodes, predicted, measured, *correlation(predicted, measured), perturbed,
                          *correlation([(1 - PERTURBATION) * p for p in predicted], perturbed))
        logits = feature_logits(subject, transcoders, graph, pruned.nodes.nonzero().flatten().tolist())
        graph_id = uuid.uuid4().hex[:12]
        with Catalog(catalog_path) as catalog:
            feature_sets = catalog.transcoder_feature_sets(set_sha256)
            explanations = {layer: catalog.latest_explanations(feature_set) for layer, feature_set in
                            feature_sets.items()}
            row = {
                "graph_id": graph_id, "run_id": run_id, "model_id": subject.sha256,
                "transcoders_path": str(folder.resolve()), "transcoders_sha256": set_sha256, "prompt": prompt,
                "token_ids": graph.token_ids, "tokens": graph.tokens, "n_layers": graph.n_layers,
                "targets": json.dumps([{"label": t.label, "token_id": t.token_id, "probability": t.probability}
                                       for t in graph.targets]),
                "settings": json.dumps(settings), "active_features": graph.active_features,
                "n_features": graph.n_features, "replacement_score": replacement,
                "completeness_score": completeness, "seconds": graph.seconds,
                "check_n": None if check is None else len(check.nodes), "check_r": None if check is None else check.r,
                "check_ci_low": None if check is None else check.ci_low,
                "check_ci_high": None if check is None else check.ci_high,
                "perturb_r": None if check is None else check.perturb_r,
                "perturb_ci_low": None if check is None else check.perturb_ci_low,
                "perturb_ci_high": None if check is None else check.perturb_ci_high}
            catalog.record_model(model_row(subject, run_id))
            catalog.record_graph(row, node_rows(graph, pruned, feature_sets, check, logits), edge_rows(graph, pruned))
    labels = {}
    for node in range(graph.n_features):
        layer, _, latent = (int(v) for v in graph.features[node])
        if latent in explanations.get(layer, {}):
            labels[node] = explanations[layer][latent]
    log.info(f"graph {graph_id}: {graph.n_features:,} feature nodes in {graph.seconds:.1f} s")
    return Traced(graph_id, graph, pruned, replacement, completeness, check, feature_sets, labels)
