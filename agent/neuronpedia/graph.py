"""An attribution graph from the catalog as Neuronpedia's graph JSON, and a feature JSON for each feature node.

The graph file follows Neuronpedia's published schema (apps/webapp/app/api/graph/graph-schema.json: metadata,
qParams, nodes, links) and the node conventions circuit-tracer writes for it: a feature node's `feature` is the
Cantor pairing of (layer, latent), so one number names a latent of a multi-layer set; logits sit on layer
n_layers + 1; token nodes on layer "E". One difference: circuit-tracer names an error node `0_{layer}_{pos}`,
which is also the name of layer 0's latent `layer` at that position; ours are `err_{layer}_{pos}`.

The feature files are the format the attribution-graph frontend fetches from `feature_json_base_url`
(`{base}/{feature}.json`): examples by quantile with per-token activations, top and bottom logits, the
activation range, quantiles, histogram and frequency, all read from the catalog (the logits as `interp trace`
stored them; for an older graph, from the decoder through the unembedding, which needs the model).

A view travels with the graph as Neuronpedia reads one: the page's saved groups as `qParams.supernodes`
([name, node_id, ...]) and its pins as `pinnedIds`.
"""

import json
import time
from importlib.metadata import version
from pathlib import Path

from agent.export import require_empty
from tools.catalog import Catalog
from tools.catalog.graphs import first_logit_node

FEATURE_TYPES = {"feature": "cross layer transcoder", "error": "mlp reconstruction error", "token": "embedding",
                 "logit": "logit"}
"""Neuronpedia's feature_type strings (circuit-tracer writes the first for per-layer transcoders too)."""


def cantor(x: int, y: int) -> int:
    return (x + y) * (x + y + 1) // 2 + y


def node_json(node: dict, graph: dict, labels: dict[tuple[int, int], str]) -> dict:
    kind, position = node["kind"], node["position"]
    out: dict = {"feature_type": FEATURE_TYPES[kind], "ctx_idx": position, "influence": node["influence"],
                 "activation": None, "clerp": ""}
    if kind == "feature":
        layer, latent = node["layer"], node["feature"]
        out |= {"node_id": f"{layer}_{latent}_{position}", "feature": cantor(layer, latent), "layer": str(layer),
                "jsNodeId": f"{layer}_{latent}-0", "activation": node["value"],
                "clerp": labels.get((layer, latent), "")}
    elif kind == "error":
        out |= {"node_id": f"err_{node['layer']}_{position}", "feature": -1, "layer": str(node["layer"]),
                "jsNodeId": f"err_{node['layer']}_{position}-0"}
    elif kind == "token":
        out |= {"node_id": f"E_{node['feature']}_{position}", "feature": position, "layer": "E",
                "jsNodeId": f"E_{node['feature']}-{position}"}
    else:
        index = node["node"] - first_logit_node(graph)
        target = graph["targets"][index]
        # A logit difference has no token: a virtual id past the vocabulary, as circuit-tracer numbers them.
        token = target["token_id"] if target["token_id"] is not None else 10**9 + index
        layer = str(graph["n_layers"] + 1)
        out |= {"node_id": f"{layer}_{token}_{position}", "feature": token, "layer": layer,
                "jsNodeId": f"L_{token}-{position}", "token_prob": target["probability"],
                "is_target_logit": index == 0,
                "clerp": f'Output "{target["label"]}" (p={target["probability"]:.3f})'}
    return out


def graph_json(catalog: Catalog, graph: dict, scan: str, feature_base_url: str | None) -> dict:
    """Neuronpedia's graph JSON for a cataloged graph (its `graphs` row)."""
    nodes = catalog.graph_nodes(graph["graph_id"])
    labels = catalog.transcoder_labels(graph["transcoders_sha256"])
    by_index = {node["node"]: node_json(node, graph, labels) for node in nodes}
    links = [{"source": by_index[edge["source"]]["node_id"], "target": by_index[edge["target"]]["node_id"],
              "weight": edge["weight"]} for edge in catalog.graph_edges(graph["graph_id"])
             if edge["source"] in by_index and edge["target"] in by_index]
    settings = graph["settings"]
    metadata: dict = {
        "slug": graph["graph_id"], "scan": scan, "prompt_tokens": list(graph["tokens"]), "prompt": graph["prompt"],
        "node_threshold": settings["node_threshold"],
        "info": {"description": f"interp-agent graph {graph['graph_id']}: replacement score "
                                f"{graph['replacement_score']:.3f}, completeness {graph['completeness_score']:.3f}",
                 "generator": {"name": "interp-agent", "version": version("interp-agent"),
                               "url": "https://github.com/interp-agent/interp-agent"},
                 "create_time_ms": int(time.time() * 1000)},
        "generation_settings": {"max_n_logits": settings["max_targets"], "desired_logit_prob": settings["cover"],
                                "batch_size": settings["batch_size"], "max_feature_nodes": settings["max_features"]},
        "pruning_settings": {"node_threshold": settings["node_threshold"],
                             "edge_threshold": settings["edge_threshold"]},
    }
    if feature_base_url:
        metadata["feature_details"] = {"feature_json_base_url": feature_base_url.rstrip("/")}
    # The fields circuit-tracer's own writer adds, so its local frontend loads the file too.
    metadata |= {"transcoder_list": [], "schema_version": 1}
    # Saved groups and pins as Neuronpedia reads a view: a supernode is [name, node_id, ...].
    named = {node: by_index[node]["node_id"] for node in by_index}
    supernodes = [[group["name"], *(named[n] for n in group["nodes"] if n in named)]
                  for group in catalog.graph_groups(graph["graph_id"])]
    pinned = [named[n] for n in catalog.graph_pins(graph["graph_id"]) if n in named]
    qparams = {"pinnedIds": pinned, "supernodes": supernodes, "linkType": "both", "clickedId": "", "sg_pos": ""}
    return {"metadata": metadata, "qParams": qparams, "nodes": list(by_index.values()), "links": links}


def feature_json(catalog: Catalog, set_id: str, layer: int, latent: int,
                 logits: tuple[list[str], list[str]] | None) -> dict | None:
    """One latent in the attribution-graph frontend's feature format, or None when it never fired."""
    row = catalog.feature(set_id, latent)
    examples = catalog.examples(set_id, latent)
    if not examples:
        return None

    def example(entry: dict) -> dict:
        acts = list(entry["acts"])
        return {"tokens_acts_list": acts, "train_token_ind": max(range(len(acts)), key=acts.__getitem__),
                "is_repeated_datapoint": False, "tokens": list(entry["tokens"])}

    groups: dict[str, list[dict]] = {}
    for entry in examples:
        name = "Top activations" if entry["bucket"] == "top" else \
            f"Quantile {entry['quantile']}" if entry["bucket"] == "quantile" else "Random"
        groups.setdefault(name, []).append(example(entry))
    top, bottom = logits or ([], [])
    return {"transcoder_id": set_id, "index": latent, "layer": layer,
            "examples_quantiles": [{"quantile_name": name, "examples": items} for name, items in groups.items()],
            "top_logits": top, "bottom_logits": bottom, "act_min": row["min_act"] or 0.0,
            "act_max": row["max_act"] or 0.0, "quantile_values": list(row["quantile_edges"] or []),
            "histogram": [float(c) for c in row["hist_counts"] or []],
            "activation_frequency": row["density"] or 0.0}


def export_graph(catalog: Catalog, graph_ref: str, out: Path, scan: str, feature_base_url: str | None,
                 logits_of=None) -> dict[str, int]:
    """Write `{slug}.json` and `features/{feature}.json` for every feature node whose layer is cached. A node's
    top and bottom logits come from the catalog (`interp trace` stores them); for a graph traced before that,
    `logits_of(layer, latent)` gives them, or None leaves them out."""
    require_empty(out)
    graph = catalog.graph(graph_ref)
    stored = {(n["layer"], n["feature"]): (list(n["top_logits"]), list(n["bottom_logits"]))
              for n in catalog.graph_nodes(graph["graph_id"]) if n["kind"] == "feature" and n.get("top_logits")}
    document = graph_json(catalog, graph, scan, feature_base_url)
    sets = catalog.transcoder_feature_sets(graph["transcoders_sha256"])
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{document['metadata']['slug']}.json").write_text(json.dumps(document), encoding="utf-8")
    features = out / "features"
    written = 0
    for node in document["nodes"]:
        if node["feature_type"] != FEATURE_TYPES["feature"]:
            continue
        layer, latent = int(node["layer"]), int(node["node_id"].split("_")[1])
        if layer not in sets or (features / f"{node['feature']}.json").exists():
            continue
        logits = stored.get((layer, latent)) or (logits_of and logits_of(layer, latent))
        detail = feature_json(catalog, sets[layer], layer, latent, logits)
        if detail is not None:
            features.mkdir(exist_ok=True)
            (features / f"{node['feature']}.json").write_text(json.dumps(detail), encoding="utf-8")
            written += 1
    return {"nodes": len(document["nodes"]), "links": len(document["links"]), "feature files": written}
