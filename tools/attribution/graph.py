"""An attribution graph as data: its nodes, in circuit-tracer's and Neuronpedia's order, and its adjacency.

The nodes: the active transcoder latents (layer, position, latent) with their activations; an error node per
layer and position (the MLP output the transcoder missed); the token embeddings; the target logits. The
adjacency is [target, source]: a row holds a node's incoming direct effects; rows of error and token nodes are
zero (nothing in the graph feeds them).
"""

from dataclasses import dataclass, field

import torch


def token_at(tokens: list[str], position: int) -> str:
    """A prompt token named with its position, so repeated tokens (the two ' of's of a prompt) stay apart."""
    return f"{tokens[position]!r}@{position}"


@dataclass(frozen=True)
class Target:
    """A logit node: a token (or a difference of two) and the weight its influence counts with."""

    label: str
    token_id: int | None
    """None for a logit difference."""
    probability: float
    vector: torch.Tensor = field(repr=False)
    """[d_model] read at the final norm's output, last position: an unembedding row less the mean row."""


@dataclass
class Graph:
    prompt: str
    token_ids: list[int]
    tokens: list[str]
    n_layers: int
    features: torch.Tensor
    """[n_features, 3] (layer, position, latent) of the feature nodes, in that order."""
    activations: torch.Tensor
    """[n_features]"""
    targets: list[Target]
    adjacency: torch.Tensor
    """[n_nodes, n_nodes], [target, source]: features, errors (layer-major), tokens, logits."""
    active_features: int
    """Active latents on the prompt (before --max-features)."""
    seconds: float = 0.0

    @property
    def n_positions(self) -> int:
        return len(self.token_ids)

    @property
    def n_features(self) -> int:
        return int(self.features.shape[0])

    def error_index(self, layer: int, position: int) -> int:
        return self.n_features + layer * self.n_positions + position

    def token_index(self, position: int) -> int:
        return self.n_features + self.n_layers * self.n_positions + position

    def logit_index(self, target: int) -> int:
        return self.n_features + (self.n_layers + 1) * self.n_positions + target

    @property
    def n_nodes(self) -> int:
        return self.logit_index(len(self.targets))

    def node_kind(self, index: int) -> str:
        if index < self.n_features:
            return "feature"
        if index < self.token_index(0):
            return "error"
        return "token" if index < self.logit_index(0) else "logit"
