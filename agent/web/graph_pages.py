"""What the graph pages show, as plain data: the list of graphs, one graph as its four panes draw it, one node's
feature detail, the scores of a pinned subgraph, and suggested groups. The JSON API returns it as is.

Every catalog string (tokens, labels, examples) is made visible (control characters as symbols) here; the page
sets it as text, never as markup.
"""

import json
from dataclasses import asdict

from agent.web.pages import shaded
from agent.web.plots import bar_chart
from tools.attribution.graph import token_at
from tools.catalog import Catalog
from tools.catalog.graphs import first_logit_node, require_kept
from tools.text import visible


def graphs(catalog: Catalog) -> dict:
    return {"graphs": [row | {"targets": json.loads(row["targets"])} for row in catalog.graphs()]}


def graph(catalog: Catalog, ref: str) -> dict:
    """A graph as its page draws it: the kept nodes (each feature with its label, feature page and density),
    the pruned edges, the named groups and pins, and the scores."""
    row = catalog.graph(ref)
    graph_id = row["graph_id"]
    sets = catalog.transcoder_feature_sets(row["transcoders_sha256"])
    labels = catalog.transcoder_labels(row["transcoders_sha256"])
    tokens = [visible(token) for token in row["tokens"]]
    stored = catalog.graph_nodes(graph_id)
    densities: dict[tuple[int, int], float] = {}
    for layer, set_id in sets.items():
        latents = [n["feature"] for n in stored if n["kind"] == "feature" and n["layer"] == layer]
        if latents:
            densities |= {(layer, latent): d for latent, d in catalog.feature_densities(set_id, latents).items()}
    nodes = []
    for node in stored:
        kind, layer, position = node["kind"], node["layer"], node["position"]
        shown = {"node": node["node"], "kind": kind, "layer": layer, "position": position,
                 "influence": node["influence"], "value": node["value"], "token": tokens[position]}
        if kind == "feature":
            key = (layer, node["feature"])
            shown |= {"feature": node["feature"], "label": visible(labels.get(key, "")),
                      "name": f"L{layer}/{node['feature']} at {token_at(tokens, position)}",
                      "density": densities.get(key),
                      "href": f"/sets/{sets[layer]}/features/{node['feature']}" if layer in sets else None}
        elif kind == "error":
            shown |= {"name": f"error L{layer} at {token_at(tokens, position)}"}
        elif kind == "token":
            shown |= {"name": f"token {token_at(tokens, position)}"}
        else:
            target = row["targets"][node["node"] - first_logit_node(row)]
            shown |= {"name": f"logit {visible(target['label'])!r}", "target": visible(target["label"]),
                      "probability": target["probability"], "label": f"p = {target['probability']:.3f}"}
        if node["check_predicted"] is not None:
            shown |= {"check_predicted": node["check_predicted"], "check_measured": node["check_measured"],
                      "check_perturbed": node["check_perturbed"]}
        nodes.append(shown)
    return {"graph": {key: row[key] for key in (
                "graph_id", "prompt", "n_layers", "targets", "n_features", "active_features",
                "replacement_score", "completeness_score", "check_n", "check_r", "check_ci_low", "check_ci_high",
                "perturb_r", "perturb_ci_low", "perturb_ci_high", "settings", "created_at", "transcoders_path")}
            | {"tokens": tokens},
            "nodes": nodes, "edges": catalog.graph_edges(graph_id), "groups": catalog.graph_groups(graph_id),
            "pinned": catalog.graph_pins(graph_id)}


def graph_node(catalog: Catalog, ref: str, node: int) -> dict:
    """One node's detail pane: for a feature, its top and bottom decoder logits, its layer's cached examples by
    quantile (activating tokens shaded), activation histogram, and every explanation with its scores."""
    row = catalog.graph(ref)
    stored = catalog.graph_node(row["graph_id"], node)
    out: dict = {"node": node, "kind": stored["kind"], "layer": stored["layer"], "value": stored["value"],
                 "top_logits": [visible(t) for t in stored.get("top_logits") or []],
                 "bottom_logits": [visible(t) for t in stored.get("bottom_logits") or []], "feature_set_id": None}
    if stored["kind"] != "feature":
        return out
    set_id = catalog.transcoder_feature_sets(row["transcoders_sha256"]).get(stored["layer"])
    if set_id is None:
        return out | {"missing": f"layer {stored['layer']} of this transcoder set is not cached; `interp sae load "
                                 f"{row['transcoders_path']} --hook mlp_in.{stored['layer']}` caches it"}
    latent = stored["feature"]
    stats = catalog.feature(set_id, latent)
    counts, high = list(stats["hist_counts"] or []), float(stats["hist_max"] or 0.0)
    scale = float(stats["max_act"] or 0.0)
    examples = [{"bucket": e["bucket"], "quantile": e["quantile"], "max_act": e["max_act"],
                 "tokens": [t | {"text": visible(t["text"])} for t in shaded(e["tokens"], e["acts"], scale)]}
                for e in catalog.examples(set_id, latent)]
    explanations = [{"text": visible(e["text"]), "explainer": e["explainer"], "llm": e["llm"],
                     "created_at": str(e["created_at"]), "scores": e["scores"]}
                    for e in catalog.feature_explanations(set_id, latent)]
    return out | {"feature_set_id": set_id, "feature": latent, "href": f"/sets/{set_id}/features/{latent}",
                  "stats": {key: stats[key] for key in ("max_act", "mean_act", "density", "n_tokens")},
                  "histogram": {"counts": counts, "low": 0.0, "high": high,
                                "chart": asdict(bar_chart(counts, 0.0, high))},
                  "examples": examples, "explanations": explanations}


def graph_scores(catalog: Catalog, ref: str, pinned: list[int]) -> dict:
    """The replacement and completeness scores of the subgraph of these pinned nodes (tools/attribution)."""
    from tools.attribution.influence import subgraph_scores

    row = catalog.graph(ref)
    stored = catalog.graph_nodes(row["graph_id"])
    kinds = {n["node"]: n["kind"] for n in stored}
    require_kept(row["graph_id"], pinned, set(kinds), "pin the graph's kept nodes")
    probabilities = {n["node"]: n["value"] for n in stored if n["kind"] == "logit"}
    edges = [(e["source"], e["target"], e["weight"]) for e in catalog.graph_edges(row["graph_id"])]
    replacement, completeness = subgraph_scores(kinds, edges, set(pinned), probabilities)
    return {"pinned": sorted(set(pinned)), "replacement_score": replacement, "completeness_score": completeness}


NAME_STOPWORDS = {"the", "tokens", "token", "and", "with", "for", "that", "this", "from", "like"}


def label_words(label: str) -> set[str]:
    """The words of a label that can name a group: alphabetic, three letters or more, not filler."""
    words = {word.strip("\"'.,;:()[]").lower() for word in label.split()}
    return {word for word in words if len(word) >= 3 and word.isalpha() and word not in NAME_STOPWORDS}


def graph_suggestions(catalog: Catalog, ref: str) -> dict:
    """Suggested supernodes of a graph's kept feature nodes (tools/attribution/grouping.py), each named by the
    words its members' labels share, else by its layers and tokens."""
    import numpy as np

    from tools.attribution.grouping import suggest_groups

    row = catalog.graph(ref)
    graph_id, tokens = row["graph_id"], list(row["tokens"])
    features = {n["node"]: n for n in catalog.graph_nodes(graph_id) if n["kind"] == "feature"}
    edges = [(e["source"], e["target"], e["weight"]) for e in catalog.graph_edges(graph_id)]
    labels = catalog.transcoder_labels(row["transcoders_sha256"])
    vectors = catalog.transcoder_label_vectors(row["transcoders_sha256"])
    node_vectors = {node: np.asarray(vectors[(n["layer"], n["feature"])]) for node, n in features.items()
                    if (n["layer"], n["feature"]) in vectors}
    out = []
    for group in suggest_groups(sorted(features), edges, node_vectors):
        members = [features[node] for node in group.nodes]
        words = [label_words(labels.get((m["layer"], m["feature"]), "")) for m in members]
        shared = sorted(set.intersection(*words)) if words else []
        layers = sorted({m["layer"] for m in members})
        at = sorted({tokens[m["position"]] for m in members})
        name = " ".join(shared[:4]) or f"L{layers[0]}-{layers[-1]} at {', '.join(repr(t) for t in at[:3])}"
        out.append({"name": visible(name[:80]), "nodes": group.nodes, "similarity": group.similarity})
    return {"suggestions": out}
