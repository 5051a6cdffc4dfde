"""Attribution graphs on tiny models: every edge is checked against an intervention in the frozen replacement
model, and the frozen model's pieces against the real one."""

import pytest
import torch

from tools.attribution.attribute import attribute
from tools.attribution.frozen import frozen_model
from tools.attribution.graph import Graph
from tools.attribution.influence import graph_scores, node_influence, prune
from tools.model.subject import load_subject_model
from tools.testing.tiny import random_transcoder

PROMPT = "the cat saw the dog and the bird"


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
