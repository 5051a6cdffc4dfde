"""Attribution graphs on tiny models: every edge is checked against an intervention in the frozen replacement
model, and the frozen model's pieces against the real one."""

import pytest
import torch

from tests.tracing import PROMPT, transcoder_catalog
from tools.attribution.attribute import attribute
from tools.attribution.frozen import frozen_model
from tools.attribution.graph import Graph
from tools.attribution.influence import graph_scores, node_influence, prune
from tools.model.subject import load_subject_model
from tools.testing.tiny import random_transcoder


def tiny_set(subject, skip: bool = True, k: int = 4) -> dict:
    d_model = subject.model.config.hidden_size
    layers = subject.model.config.num_hidden_layers
    return {layer: random_transcoder(d_model, 48, layer, k=k, seed=layer, skip=skip) for layer in range(layers)}


def frozen_value(subject, transcoders, graph: Graph, source: int | None) -> torch.Tensor:
    """Every feature node's pre-activation (less its bias) and every target's logit, in the frozen replacement
    model, with node `source`'s output removed (None: nothing removed)."""
    from tools.experiments.interventions import encode_text

    input_ids = encode_text(subject, graph.prompt)
    with frozen_model(subject.model, transcoders) as state, torch.no_grad():
        subject.model(input_ids=input_ids, use_cache=False)
        state.recording = False
        d = subject.model.config.hidden_size
        if source is not None:
            kind = graph.node_kind(source)
            if kind == "feature":
                layer, position, latent = graph.features[source].tolist()
                edit = torch.zeros(1, graph.n_positions, d)
                edit[0, position] = -graph.activations[source] * transcoders[layer].W_dec[latent]
                state.out_edits[layer] = edit
            elif kind == "error":
                offset = source - graph.n_features
                layer, position = divmod(offset, graph.n_positions)
                real_out = state.rest[layer][0, position] + (state.skip(layer, state.inputs[layer][0, position])
                                                             if transcoders[layer].W_skip is not None else 0)
                predicted = transcoders[layer].forward(state.inputs[layer][0, position].float())
                edit = torch.zeros(1, graph.n_positions, d)
                edit[0, position] = -(real_out - predicted)
                state.out_edits[layer] = edit
            else:
                position = source - graph.token_index(0)
                edit = torch.zeros(1, graph.n_positions, d)
                edit[0, position] = -state.embedding[0, position]
                state.embedding_edit = edit
        final = subject.model.base_model(input_ids=input_ids, use_cache=False).last_hidden_state[0, -1]
        values = [state.inputs[int(layer)][0, int(position)].float() @ transcoders[int(layer)].W_enc[:, int(latent)]
                  for layer, position, latent in graph.features]
        values += [final.float() @ target.vector for target in graph.targets]
        return torch.stack(values)


@pytest.mark.parametrize("architecture", ["llama", "gemma3", "gpt2"])
def test_every_edge_is_the_effect_of_removing_its_source_in_the_frozen_model(tiny_models, architecture):
    torch.manual_seed(0)
    subject = load_subject_model(str(tiny_models[architecture]), "cpu")
    transcoders = tiny_set(subject, skip=architecture != "gpt2")
    graph = attribute(subject, transcoders, PROMPT, batch_size=8)
    assert graph.n_features == graph.active_features > 0
    assert graph.adjacency.shape == (graph.n_nodes, graph.n_nodes)
    clean = frozen_value(subject, transcoders, graph, None)
    rows = list(range(graph.n_features)) + [graph.logit_index(i) for i in range(len(graph.targets))]
    sources = list(range(graph.n_features)) + [graph.error_index(layer, position) for layer in range(graph.n_layers)
                                               for position in range(1, graph.n_positions)] + \
        [graph.token_index(position) for position in range(graph.n_positions)]
    checked = 0
    for source in sources:
        change = frozen_value(subject, transcoders, graph, source) - clean
        expected = -graph.adjacency[rows, source]
        torch.testing.assert_close(change, expected, atol=1e-4, rtol=1e-4, msg=f"source {source}")
        checked += int((expected.abs() > 1e-6).sum())
    assert checked > 100  # the edges are not all zero
    # Edges only climb: a feature is fed by earlier layers, tokens and errors below it.
    for node, (layer, _, _) in enumerate(graph.features.tolist()):
        later = [s for s in range(graph.n_features) if graph.features[s, 0] >= layer]
        assert not graph.adjacency[node, later].any()


def test_the_frozen_model_is_the_real_model_on_the_prompt(tiny_models):
    """Recording replaces nothing: the logits are the real model's, and a frozen pass of the prompt gives the
    same final residual."""
    from tools.experiments.interventions import encode_text

    subject = load_subject_model(str(tiny_models["gemma3"]), "cpu")
    input_ids = encode_text(subject, PROMPT)
    with torch.no_grad():
        real = subject.model(input_ids=input_ids, use_cache=False)
    transcoders = tiny_set(subject)
    before = [p.requires_grad for p in subject.model.parameters()]
    with frozen_model(subject.model, transcoders) as state, torch.no_grad():
        assert not any(p.requires_grad for p in subject.model.parameters())
        recorded = subject.model(input_ids=input_ids, use_cache=False).logits
        state.recording = False
        replayed = subject.model(input_ids=input_ids.expand(3, -1), use_cache=False).logits
    torch.testing.assert_close(recorded, real.logits, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(replayed, real.logits.expand(3, -1, -1), atol=1e-5, rtol=1e-5)
    assert [p.requires_grad for p in subject.model.parameters()] == before  # restored
    assert subject.model.config._attn_implementation != "interp_frozen"


def test_max_features_keeps_the_most_influential_and_pruning_keeps_tokens_and_logits(tiny_models):
    subject = load_subject_model(str(tiny_models["llama"]), "cpu")
    transcoders = tiny_set(subject)
    whole = attribute(subject, transcoders, PROMPT, batch_size=8)
    part = attribute(subject, transcoders, PROMPT, batch_size=4, max_features=10, update_interval=1)
    assert part.n_features == 10 and part.active_features == whole.active_features
    # Each kept feature's incoming edges are the same as in the whole graph.
    index = {tuple(row): i for i, row in enumerate(whole.features.tolist())}
    for i, row in enumerate(part.features.tolist()):
        j = index[tuple(row)]
        torch.testing.assert_close(part.adjacency[i, part.n_features:], whole.adjacency[j, whole.n_features:])
    influence = node_influence(whole)[:whole.n_features]
    chosen = torch.tensor([index[tuple(row)] for row in part.features.tolist()])
    # Visited in the order of influence: the 10 kept rank high in the whole graph's influence.
    assert influence[chosen].mean() > influence.mean()
    pruned = prune(whole, 0.8, 0.98)
    assert pruned.nodes[whole.token_index(0):].all()
    assert pruned.nodes[:whole.n_features].sum() < whole.n_features
    replacement, completeness = graph_scores(whole)
    assert 0.0 <= replacement <= 1.0 and 0.0 <= completeness <= 1.0


def test_named_targets_and_a_logit_difference(tiny_models):
    from tools.errors import InterpError

    subject = load_subject_model(str(tiny_models["llama"]), "cpu")
    transcoders = tiny_set(subject)
    graph = attribute(subject, transcoders, PROMPT, target_names=[" cat", " dog"], batch_size=8)
    assert [t.label.strip() for t in graph.targets] == ["cat", "dog"]  # (this tokenizer has no leading spaces)
    difference = attribute(subject, transcoders, PROMPT, target_names=[" cat"], versus=" dog", batch_size=8)
    # A difference's edges are the difference of the two targets' edges.
    sources = slice(0, graph.logit_index(0))
    torch.testing.assert_close(difference.adjacency[difference.logit_index(0), sources],
                               graph.adjacency[graph.logit_index(0), sources]
                               - graph.adjacency[graph.logit_index(1), sources], atol=1e-5, rtol=1e-4)
    with pytest.raises(InterpError, match="a target is one token"):
        attribute(subject, transcoders, PROMPT, target_names=[" cat dog"])


def test_predicted_ablation_effects_follow_paths_through_features():
    """Three features in a chain (f0 -> f1 -> f2) and a logit: removing f0 changes f1's input by -A[f1,f0], so f1
    (slope 1) changes its output by that much per unit, and so on up to the logit."""
    from tools.attribution.graph import Target
    from tools.attribution.influence import ablation_effects

    n_layers = 3
    features = torch.tensor([[0, 1, 5], [1, 1, 6], [2, 1, 7]])
    graph = Graph("p", [0, 1], ["<bos>", "x"], n_layers, features, torch.tensor([2.0, 4.0, 0.5]),
                  [Target("y", 9, 1.0, torch.zeros(4))], torch.zeros(0, 0), 3)
    adjacency = torch.zeros(graph.n_nodes, graph.n_nodes)
    adjacency[1, 0] = 3.0  # f0 contributes 3 to f1's input
    adjacency[2, 1] = -8.0  # f1 (activation 4) contributes -8 to f2's: -2 per unit
    adjacency[graph.logit_index(0), 2] = 1.5  # f2 (activation 0.5) contributes 1.5: 3 per unit
    adjacency[graph.logit_index(0), 0] = 0.25  # and f0 directly
    graph.adjacency = adjacency
    effects = ablation_effects(graph, torch.tensor([0, 1, 2]))
    # f0 removed: logit loses 0.25 directly; f1 input -3 -> f2 input (-3)(-2) = +6 -> logit 6 * 3 = +18.
    # f1 removed: f2's input +8 -> logit 8 * 3 = +24. f2 removed: the logit loses its 1.5.
    torch.testing.assert_close(effects, torch.tensor([-0.25 + 18.0, 24.0, -1.5]))


def test_trace_command_keeps_the_graph_and_joins_the_labels(tmp_path, tiny_models, capsys):
    import json

    import duckdb

    from agent.cli import main
    from tools.catalog import Catalog

    # Layer 2's latents cached and labeled without an LLM, so the graph's layer-2 nodes carry labels.
    catalog_path, folder = transcoder_catalog(tiny_models["llama"], tmp_path, 2)
    catalog = str(catalog_path)
    common = ["--model", str(tiny_models["llama"]), "--device", "cpu", "--catalog", catalog]
    capsys.readouterr()
    assert main(["trace", PROMPT, "--transcoders", str(folder), "--check", "5", "--batch-size", "8",
                 "--node-threshold", "1.0", "--edge-threshold", "1.0", "--no-progress", "--json", *common]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["feature_nodes"] == result["active_features"] > 0 and len(result["check"]["nodes"]) == 5
    # Each node is also scaled by 0.9 in the real model (a random tiny model is far from linear, so only the
    # bookkeeping is checked here; test_scaling_a_node_by_one_changes_nothing checks the edit itself).
    assert all(isinstance(node["perturbed"], float) for node in result["check"]["nodes"])
    assert -1.0 <= result["check"]["perturb_r"] <= 1.0
    assert any(node["label"] for node in result["nodes"] if node["node"].startswith("L2/"))
    con = duckdb.connect(catalog, read_only=True)  # closed before the next command opens the catalog
    graph = con.execute("SELECT graph_id, n_layers, check_n, replacement_score, perturb_r FROM graphs").fetchall()
    assert len(graph) == 1 and graph[0][1] == 3 and graph[0][2] == 5 and 0 <= graph[0][3] <= 1
    assert graph[0][4] == pytest.approx(result["check"]["perturb_r"])
    graph_id = graph[0][0]
    stored = con.execute("SELECT check_perturbed FROM graph_nodes WHERE graph_id = ? AND check_perturbed IS NOT NULL "
                         "ORDER BY check_perturbed", [graph_id]).fetchall()
    assert [row[0] for row in stored] == pytest.approx(sorted(node["perturbed"] for node in result["check"]["nodes"]))
    kinds = dict(con.execute("SELECT kind, count(*) FROM graph_nodes WHERE graph_id = ? GROUP BY kind",
                             [graph_id]).fetchall())
    assert kinds["token"] == len(result["tokens"]) and kinds["logit"] == len(result["targets"])
    assert con.execute("SELECT count(*) FROM graph_edges WHERE graph_id = ?", [graph_id]).fetchone()[0] == \
        result["kept_edges"]
    linked = con.execute("SELECT count(*) FROM graph_nodes n JOIN feature_sets f USING (feature_set_id) "
                         "WHERE n.layer = 2 AND n.kind = 'feature'").fetchone()[0]
    assert linked > 0
    assert con.execute("SELECT status FROM runs WHERE kind = 'trace'").fetchone()[0] == "complete"
    con.close()
    # The table form names the graph, its scores and the check.
    assert main(["trace", PROMPT, "--transcoders", str(folder), "--check", "0", "--target", "cat", "--no-progress",
                 *common]) == 0
    out = capsys.readouterr().out
    assert "replacement score" in out and "through features to 'cat'" in out
    # Labeling just the graph's nodes of a layer: the latents its kept nodes use there, and only those.
    with Catalog(catalog, read_only=True) as reader:
        wanted = set(reader.graph_latents(graph_id, reader.feature_set("mlp_in.2")["feature_set_id"]))
    assert wanted
    assert main(["label", "mlp_in.2", "--features-from-graph", graph_id, "--explainer", "token-stats",
                 "--scorers", "", "--json", "--catalog", catalog]) == 0
    labeled = json.loads(capsys.readouterr().out)
    assert {row["feature"] for row in labeled["features"]} == wanted


def test_a_graph_exports_as_neuronpedia_json_that_their_schema_accepts(tmp_path, tiny_models, capsys):
    import json
    from pathlib import Path

    import jsonschema

    from agent.cli import main

    catalog_path, folder = transcoder_catalog(tiny_models["llama"], tmp_path, 1)
    catalog = str(catalog_path)
    common = ["--model", str(tiny_models["llama"]), "--device", "cpu", "--catalog", catalog]
    assert main(["trace", PROMPT, "--transcoders", str(folder), "--check", "0", "--node-threshold", "1.0",
                 "--edge-threshold", "1.0", "--no-progress", *common]) == 0
    capsys.readouterr()
    out = tmp_path / "np"
    assert main(["export", "graph", "latest", "--format", "neuronpedia", "--out", str(out), "--device", "cpu",
                 "--feature-base-url", "https://example.org/features/", "--catalog", catalog]) == 0
    [graph_file] = out.glob("*.json")
    document = json.loads(graph_file.read_text())
    schema = json.loads((Path(__file__).parents[1] / "fixtures" / "neuronpedia_graph_schema.json").read_text())
    jsonschema.validate(document, schema)
    ids = [node["node_id"] for node in document["nodes"]]
    assert len(ids) == len(set(ids))  # error nodes never share a name with a layer-0 latent
    assert {link["source"] for link in document["links"]} | {link["target"] for link in document["links"]} <= set(ids)
    features = [node for node in document["nodes"] if node["feature_type"] == "cross layer transcoder"]
    for node in features:  # Cantor pairing of (layer, latent)
        layer, latent, _ = (int(part) for part in node["node_id"].split("_"))
        assert node["feature"] == (layer + latent) * (layer + latent + 1) // 2 + latent
    labeled = [node for node in features if node["layer"] == "1" and node["clerp"]]
    assert labeled  # layer 1 is labeled, and its nodes carry the label
    assert document["metadata"]["feature_details"]["feature_json_base_url"] == "https://example.org/features"
    detail = json.loads((out / "features" / f"{labeled[0]['feature']}.json").read_text())
    assert detail["examples_quantiles"] and len(detail["top_logits"]) == 10
    example = detail["examples_quantiles"][0]["examples"][0]
    assert len(example["tokens"]) == len(example["tokens_acts_list"])
    logits = [node for node in document["nodes"] if node["feature_type"] == "logit"]
    assert sum(node["is_target_logit"] for node in logits) == 1


def test_suggested_groups_gather_nodes_with_alike_edges_and_labels():
    import numpy as np

    from tools.attribution.grouping import suggest_groups

    # 1 and 2 feed 10 and are fed by 20 alike; 3 feeds 10 the other way; 4 feeds 11 only.
    edges = [(20, 1, 1.0), (20, 2, 0.9), (1, 10, 2.0), (2, 10, 1.8), (3, 10, -2.0), (20, 3, 1.0), (4, 11, 1.0)]
    groups = suggest_groups([1, 2, 3, 4], edges, {})
    assert [group.nodes for group in groups] == [[1, 2]] and groups[0].similarity > 0.99
    # Labels that disagree pull a pair apart; the threshold decides.
    apart = {1: np.array([1.0, 0.0]), 2: np.array([-1.0, 0.0])}
    assert suggest_groups([1, 2, 3, 4], edges, apart, min_similarity=0.6) == []
    assert suggest_groups([1], edges, {}) == []


def test_a_graph_made_elsewhere_imports_for_viewing_and_labeling(tmp_path, tiny_models, capsys):
    """Neuronpedia's graph JSON with circuit-tracer's node names (its error nodes are `0_{layer}_{pos}`), as
    its create_graph_files writes it, comes in renumbered; a .pt pickle is refused."""
    import json

    from agent.cli import main
    from tools.catalog import Catalog
    from tools.errors import InterpError

    catalog_path, folder = transcoder_catalog(tiny_models["llama"], tmp_path, 1, label=False)
    catalog = str(catalog_path)
    document = {
        "metadata": {"slug": "theirs", "scan": "tiny", "prompt": "the cat", "prompt_tokens": ["<bos>", "the", "cat"],
                     "node_threshold": 0.8},
        "qParams": {},
        "nodes": [
            {"node_id": "1_7_2", "feature": 15, "layer": "1", "ctx_idx": 2, "feature_type": "cross layer transcoder",
             "jsNodeId": "1_7-0", "clerp": "", "influence": 0.2, "activation": 3.5},
            {"node_id": "0_1_2", "feature": -1, "layer": "1", "ctx_idx": 2, "feature_type": "mlp reconstruction error",
             "jsNodeId": "1_2-0", "clerp": "", "influence": 0.5},
            {"node_id": "E_4_1", "feature": 1, "layer": "E", "ctx_idx": 1, "feature_type": "embedding",
             "jsNodeId": "E_4-1", "clerp": ""},
            {"node_id": "E_5_2", "feature": 2, "layer": "E", "ctx_idx": 2, "feature_type": "embedding",
             "jsNodeId": "E_5-2", "clerp": ""},
            {"node_id": "4_9_2", "feature": 9, "layer": "4", "ctx_idx": 2, "feature_type": "logit",
             "jsNodeId": "L_9-2", "clerp": 'Output " dog" (p=0.412)', "token_prob": 0.412},
        ],
        "links": [{"source": "E_5_2", "target": "1_7_2", "weight": 1.5},
                  {"source": "1_7_2", "target": "4_9_2", "weight": 2.0},
                  {"source": "0_1_2", "target": "4_9_2", "weight": -0.5}],
    }
    (tmp_path / "theirs.json").write_text(json.dumps(document))
    capsys.readouterr()
    assert main(["import", "graph", str(tmp_path / "theirs.json"), "--transcoders", str(folder),
                 "--catalog", catalog]) == 0
    assert "imported graph" in capsys.readouterr().out
    with Catalog(catalog, read_only=True) as reader:
        graph = reader.graph("latest")
        nodes = {row["kind"]: row for row in reader.graph_nodes(graph["graph_id"])}
        edges = reader.graph_edges(graph["graph_id"])
        latents = reader.graph_latents(graph["graph_id"], reader.feature_set("mlp_in.1")["feature_set_id"])
    assert graph["tokens"] == ["<bos>", "the", "cat"] and graph["token_ids"] == [0, 4, 5] and graph["n_layers"] == 2
    assert graph["targets"] == [{"label": " dog", "token_id": 9, "probability": 0.412}]
    assert nodes["feature"]["node"] == 0 and (nodes["feature"]["layer"], nodes["feature"]["feature"]) == (1, 7)
    assert nodes["error"]["node"] == 1 + 1 * 3 + 2 and nodes["logit"]["node"] == 1 + 3 * 3
    assert {(e["source"], e["target"], e["weight"]) for e in edges} == {(9, 0, 1.5), (0, 10, 2.0), (6, 10, -0.5)}
    assert latents == [7]  # its layer-1 node joins the feature set cached from the same transcoders
    (tmp_path / "theirs.pt").write_bytes(b"\x80\x04")
    with pytest.raises(InterpError, match="a Python pickle"):
        from agent.trace.imports import import_graph

        import_graph(tmp_path / "theirs.pt", tmp_path / "c.duckdb")


def test_scaling_a_node_by_one_changes_nothing(tmp_path, tiny_models):
    from tools.attribution.check import measured_changes
    from tools.sae.transcoders import load_transcoder_set

    _, folder = transcoder_catalog(tiny_models["llama"], tmp_path, 2, label=False)
    subject = load_subject_model(str(tiny_models["llama"]), "cpu", "float32")
    transcoders = load_transcoder_set(folder)
    graph = attribute(subject, transcoders, PROMPT, [], None, 1, 0.95, 0, 8)
    nodes = list(range(min(4, graph.n_features)))
    assert measured_changes(subject, transcoders, graph, nodes, factor=1.0) == [0.0] * len(nodes)
    assert any(value != 0 for value in measured_changes(subject, transcoders, graph, nodes, factor=0.9))
