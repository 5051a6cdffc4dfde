"""Suggested supernodes: feature nodes that play the same part in a graph, grouped for a person to accept.

Two features play the same part when they feed the same nodes and are fed by the same nodes with the same
signs (cosine similarity of their incoming and outgoing edge profiles over the kept graph), and, where both
are labeled, when their labels say the same thing (cosine similarity of the labels' embeddings). Groups are
the clusters of average-linkage agglomerative clustering cut at `min_similarity`, of at least two nodes.
Circuit-tracer leaves grouping to people (its maintainers call automatic grouping an open research
direction); this is a suggestion, shown beside the graph, never saved until accepted.
"""

from dataclasses import dataclass

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage

LABEL_WEIGHT = 0.3
"""The labels' share of the similarity where both nodes have one; the edges' is the rest."""


@dataclass(frozen=True)
class Suggestion:
    nodes: list[int]
    similarity: float
    """Mean pairwise similarity within the group."""


def unit_rows(matrix: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(matrix, axis=1, keepdims=True)
    return matrix / np.where(norms > 0, norms, 1.0)


def similarities(nodes: list[int], edges: list[tuple[int, int, float]],
                 label_vectors: dict[int, np.ndarray]) -> np.ndarray:
    """[n, n] similarity of the feature `nodes` (graph node ids) from the edges (source, target, weight)."""
    index = {node: i for i, node in enumerate(nodes)}
    others = sorted({s for s, _, _ in edges} | {t for _, t, _ in edges})
    column = {node: i for i, node in enumerate(others)}
    incoming = np.zeros((len(nodes), len(others)))
    outgoing = np.zeros((len(nodes), len(others)))
    for source, target, weight in edges:
        if target in index:
            incoming[index[target], column[source]] += weight
        if source in index:
            outgoing[index[source], column[target]] += weight
    profiles = np.concatenate([unit_rows(incoming), unit_rows(outgoing)], axis=1) / np.sqrt(2.0)
    similarity = profiles @ profiles.T
    labeled = np.array([node in label_vectors for node in nodes])
    if labeled.any():
        dimension = len(next(iter(label_vectors.values())))
        vectors = unit_rows(np.stack([label_vectors.get(node, np.zeros(dimension)) for node in nodes]))
        both = labeled[:, None] & labeled[None, :]
        similarity = np.where(both, (1 - LABEL_WEIGHT) * similarity + LABEL_WEIGHT * (vectors @ vectors.T), similarity)
    return np.clip(similarity, -1.0, 1.0)


def suggest_groups(nodes: list[int], edges: list[tuple[int, int, float]], label_vectors: dict[int, np.ndarray],
                   min_similarity: float = 0.6, max_groups: int = 12) -> list[Suggestion]:
    """Groups of at least two feature nodes, the most alike first."""
    if len(nodes) < 2:
        return []
    similarity = similarities(nodes, edges, label_vectors)
    distance = 1.0 - similarity[np.triu_indices(len(nodes), k=1)]
    clusters = fcluster(linkage(distance, method="average"), t=1.0 - min_similarity, criterion="distance")
    groups = []
    for cluster in np.unique(clusters):
        members = np.flatnonzero(clusters == cluster)
        if len(members) < 2:
            continue
        inside = similarity[np.ix_(members, members)][np.triu_indices(len(members), k=1)]
        groups.append(Suggestion([nodes[i] for i in members], float(inside.mean())))
    return sorted(groups, key=lambda group: (-group.similarity, group.nodes))[:max_groups]
