"""`interp import graph FILE.json`: a graph made elsewhere (circuit-tracer's `create_graph_files`, a Neuronpedia
download; both write Neuronpedia's graph JSON) into the catalog, for the graph page and for labeling its
nodes.

Nodes are read by their `feature_type`: a transcoder feature's `node_id` is `{layer}_{latent}_{position}`, an
error node's carries its layer and `ctx_idx`, a token node's `node_id` is `E_{token id}_{position}`, and a
logit's `feature` is its token id. They are renumbered in our node order (features, errors, tokens, logits),
so the page, `interp label --features-from-graph` and the export read them like a traced graph. With
`--transcoders DIR` (the set the graph was made with) its feature nodes join the feature sets cached from that
set. circuit-tracer's `.pt` graphs are Python pickles, which can run code when loaded: they are refused, and
the JSON its `create_graph_files` writes from them is read instead.
"""

import hashlib
import json
import re
import uuid
from pathlib import Path

from tools.catalog import Catalog, check_catalog_path
from tools.errors import InterpError
from tools.model.subject import sha256_folder_weights
from tools.passes.cache import package_versions

FEATURE_TYPES = ("cross layer transcoder", "transcoder", "per layer transcoder")
ERROR_TYPES = ("mlp reconstruction error",)


def read_document(path: Path) -> dict:
    if path.suffix == ".pt":
        raise InterpError(f"'{path}' is a circuit-tracer .pt graph: a Python pickle, which can run code when "
                          "loaded; write its JSON with circuit_tracer.utils.create_graph_files and import that")
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise InterpError(f"'{path}': not a readable graph JSON ({str(error).splitlines()[0][:120]})") from None
    missing = [key for key in ("metadata", "nodes", "links") if key not in document]
    if missing or not isinstance(document.get("nodes"), list):
        raise InterpError(f"'{path}': a graph JSON has metadata, nodes and links (Neuronpedia's graph schema); "
                          f"missing {', '.join(missing) or 'a list of nodes'}")
    return document


def parse_node(node: dict, path: Path) -> dict:
    kind, node_id = str(node.get("feature_type", "")), str(node.get("node_id", ""))
    position = int(node.get("ctx_idx", 0))
    if kind in FEATURE_TYPES:
        match = re.fullmatch(r"(\d+)_(\d+)_(\d+)", node_id)
        if match is None:
            raise InterpError(f"'{path}': feature node '{node_id}' is not layer_latent_position")
        return {"kind": "feature", "layer": int(match.group(1)), "feature": int(match.group(2)),
                "position": int(match.group(3)), "value": node.get("activation")}
    if kind in ERROR_TYPES:
        return {"kind": "error", "layer": int(node["layer"]), "position": position}
    if kind == "embedding":
        match = re.fullmatch(r"E_(-?\d+)_(\d+)", node_id)
        return {"kind": "token", "position": position, "feature": int(match.group(1)) if match else None}
    if kind == "logit":
        return {"kind": "logit", "position": position, "feature": node.get("feature"),
                "value": node.get("token_prob"), "label": str(node.get("clerp", ""))}
    raise InterpError(f"'{path}': node '{node_id}' has feature_type '{kind}'; expected a transcoder feature, "
                      "an MLP error, an embedding or a logit")


def import_graph(path: Path, catalog_path: Path, transcoders: str | None = None) -> tuple[str, int, int]:
    """(graph id, nodes, links) of the imported graph."""
    catalog_path = Path(catalog_path)
    check_catalog_path(catalog_path)
    document = read_document(path)
    metadata = document["metadata"]
    parsed = {str(node.get("node_id")): parse_node(node, path) for node in document["nodes"]}
    influence = {str(node.get("node_id")): node.get("influence") for node in document["nodes"]}
    tokens = [str(token) for token in metadata.get("prompt_tokens") or []]
    if not tokens:
        raise InterpError(f"'{path}': metadata.prompt_tokens is empty; a graph names its prompt's tokens")
    n_positions = len(tokens)
    layers = [p["layer"] for p in parsed.values() if p["kind"] in ("feature", "error")]
    n_layers = max(layers, default=-1) + 1
    features = sorted((p["layer"], p["position"], p["feature"], node_id) for node_id, p in parsed.items()
                      if p["kind"] == "feature")
    logits = [node_id for node_id, p in parsed.items() if p["kind"] == "logit"]
    n_features = len(features)
    index: dict[str, int] = {node_id: i for i, (*_, node_id) in enumerate(features)}
    for node_id, p in parsed.items():
        if p["kind"] == "error":
            index[node_id] = n_features + p["layer"] * n_positions + p["position"]
        elif p["kind"] == "token":
            index[node_id] = n_features + n_layers * n_positions + p["position"]
    for i, node_id in enumerate(logits):
        index[node_id] = n_features + (n_layers + 1) * n_positions + i
    token_ids = [0] * n_positions
    for p in parsed.values():
        if p["kind"] == "token" and p["feature"] is not None and p["position"] < n_positions:
            token_ids[p["position"]] = p["feature"]
    edges = []
    for link in document["links"]:
        source, target = str(link.get("source")), str(link.get("target"))
        if source not in index or target not in index:
            raise InterpError(f"'{path}': link {source} -> {target} names a node the graph does not have")
        edges.append({"source": index[source], "target": index[target], "weight": float(link["weight"])})
    targets = [{"label": re.sub(r'^Output "(.*)" \(p=.*\)$', r"\1", parsed[node_id]["label"]),
                "token_id": parsed[node_id]["feature"], "probability": parsed[node_id]["value"] or 0.0}
               for node_id in logits]
    set_sha256 = sha256_folder_weights(Path(transcoders)) if transcoders else ""
    settings = {"imported_from": str(path.resolve()), "scan": metadata.get("scan"),
                "node_threshold": metadata.get("node_threshold") or 0.8,
                "edge_threshold": (metadata.get("pruning_settings") or {}).get("edge_threshold", 0.98),
                **(metadata.get("generation_settings") or {})}
    config = {"file": str(path.resolve()), "transcoders": transcoders}
    config_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    graph_id = uuid.uuid4().hex[:12]
    nodes = []
    for node_id, p in parsed.items():
        row = {"node": index[node_id], "kind": p["kind"], "layer": p.get("layer"), "position": p["position"],
               "feature": p.get("feature"), "value": p.get("value"), "influence": influence[node_id]}
        nodes.append(row)
    with Catalog.run(catalog_path, "import_graph", config, config_hash, None, package_versions()) as run_id:
        with Catalog(catalog_path) as catalog:
            sets = catalog.transcoder_feature_sets(set_sha256) if set_sha256 else {}
            for row in nodes:
                if row["kind"] == "feature":
                    row["feature_set_id"] = sets.get(row["layer"])
            catalog.record_graph({
                "graph_id": graph_id, "run_id": run_id, "model_id": f"scan:{metadata.get('scan', '')}",
                "transcoders_path": str(Path(transcoders).resolve()) if transcoders else "",
                "transcoders_sha256": set_sha256, "prompt": str(metadata.get("prompt", "")), "token_ids": token_ids,
                "tokens": tokens, "n_layers": n_layers, "targets": json.dumps(targets),
                "settings": json.dumps(settings), "active_features": n_features, "n_features": n_features},
                sorted(nodes, key=lambda row: row["node"]), edges)
    return graph_id, len(nodes), len(edges)
