"""Checking a graph against the real model: scale feature nodes one at a time in the unfrozen model and see
whether the target moves as the graph says.

The graph predicts each node's effect linearly, with attention patterns, norm scales and every other latent's
nonlinearity frozen (tools/attribution/influence.py `ablation_effects`). The real model has none of that
frozen, so the correlation between predicted and measured changes says how far the graph's story survives
in the model itself. Two strengths: full ablation (factor 0), the effect a researcher asks about, where the
model's nonlinearities are free to disagree; and a small perturbation (factor 0.9, predicted as 0.1 x the
ablation's), where a linear graph can be held to its word.
"""

import torch

from tools.attribution.graph import Graph
from tools.experiments.interventions import encode_text
from tools.model.hooks import spliced_mlps
from tools.model.subject import SubjectModel
from tools.sae.autoencoder import SAE


def target_value(subject: SubjectModel, input_ids: torch.Tensor, vector: torch.Tensor) -> float:
    """The target as the graph reads it: the final norm's output at the last position dotted with its vector
    (a demeaned logit, or a logit difference)."""
    hidden = subject.model.base_model(input_ids=input_ids, use_cache=False).last_hidden_state[0, -1]
    return float(hidden.float() @ vector.to(hidden.device))


ABLATION = 0.0
PERTURBATION = 0.9


@torch.no_grad()
def measured_changes(subject: SubjectModel, transcoders: dict[int, SAE], graph: Graph, nodes: list[int],
                     factor: float = ABLATION, target: int = 0) -> list[float]:
    """The real change of target `target` when each feature node is scaled by `factor` at its position: its
    layer's MLP output loses (1 - factor) x activation x decoder row there, and everything after it runs as the
    model runs."""
    input_ids = encode_text(subject, graph.prompt)
    vector = graph.targets[target].vector
    clean = target_value(subject, input_ids, vector)
    changes = []
    for node in nodes:
        layer, position, latent = (int(v) for v in graph.features[node])
        transcoder = transcoders[layer]

        def ablate(inputs: torch.Tensor, outputs: torch.Tensor, position: int = position, latent: int = latent,
                   transcoder: SAE = transcoder) -> torch.Tensor:
            value = transcoder.encode(inputs[:, position].float())[:, latent]  # [batch]
            out = outputs.clone()
            removed = (1.0 - factor) * value[:, None] * transcoder.W_dec[latent]
            out[:, position] = (outputs[:, position].float() - removed).to(out.dtype)
            return out

        with spliced_mlps(subject.model, {layer: ablate}):
            changes.append(target_value(subject, input_ids, vector) - clean)
    return changes
