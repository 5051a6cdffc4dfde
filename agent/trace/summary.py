"""A graph's nodes named for people and LLMs, and its most influential feature nodes, shared by `interp trace`'s
table and the agents' `trace` tool."""

from tools.attribution.graph import Graph, token_at
from tools.attribution.influence import Pruned


def node_name(graph: Graph, node: int) -> str:
    kind = graph.node_kind(node)
    if kind == "feature":
        layer, position, latent = (int(v) for v in graph.features[node])
        return f"L{layer}/{latent} at {token_at(graph.tokens, position)}"
    if kind == "error":
        layer, position = divmod(node - graph.n_features, graph.n_positions)
        return f"error L{layer} at {token_at(graph.tokens, position)}"
    if kind == "token":
        return f"token {token_at(graph.tokens, node - graph.token_index(0))}"
    return f"logit {graph.targets[node - graph.logit_index(0)].label!r}"


def influential_nodes(graph: Graph, pruned: Pruned, kinds: tuple[str, ...] = ("feature", "error"),
                      n: int | None = None) -> list[int]:
    """Kept nodes of these kinds, the most influential first."""
    kept = [node for node in pruned.nodes.nonzero().flatten().tolist() if graph.node_kind(node) in kinds]
    return sorted(kept, key=lambda node: -float(pruned.influence[node]))[:n]


def influence_share(pruned: Pruned, node: int) -> float:
    """A node's share of all influence on the targets."""
    return float(pruned.influence[node]) / (float(pruned.influence.sum()) or 1.0)
