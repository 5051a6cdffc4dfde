"""Influence, pruning and the graph's two scores, as the attribution-graphs paper and circuit-tracer define them.

Influence: each row of |A| (a node's incoming edges) is normalized to sum 1, so a node passes on what reaches it
in proportion to its inputs; a node's influence is the weight that reaches it from the logits (weighted by their
probabilities) over paths of every length: w A + w A^2 + ... The graph is acyclic (edges go up in layer, or from
tokens), so the series ends.

Pruning keeps the nodes that carry `node_threshold` of the total influence (tokens and logits always), then the
edges that carry `edge_threshold` of the edge influence among them, then drops feature and error nodes left
without an outgoing edge and features left without an incoming one, until nothing changes.

Replacement score: of the influence that reaches tokens and error nodes, the share that reaches tokens (the graph
explains the output from the prompt through features alone when it is 1). Completeness score: the share of each
node's input that does not come from error nodes, weighted by the node's influence.
"""

from dataclasses import dataclass

import torch

from tools.attribution.graph import Graph


def normalized(matrix: torch.Tensor) -> torch.Tensor:
    absolute = matrix.abs()
    return absolute / absolute.sum(dim=1, keepdim=True).clamp(min=1e-10)


def series(matrix: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """w A + w A^2 + ...: ends within as many steps as nodes, since the graph is acyclic."""
    current = weights @ matrix
    total = current.clone()
    for _ in range(matrix.shape[0]):
        if not current.any():
            return total
        current = current @ matrix
        total += current
    raise RuntimeError("influence did not converge: the adjacency has a cycle")


def logit_weights(probabilities: torch.Tensor, n_before: int, n_targets: int) -> torch.Tensor:
    """Zeros for the first `n_before` rows, then each target's probability."""
    return torch.cat([torch.zeros(n_before), probabilities.float()[:n_targets]])


def partial_influence(rows: torch.Tensor, row_nodes: torch.Tensor, row_weights: torch.Tensor,
                      n_columns: int) -> torch.Tensor:
    """Influence over every column from the rows computed so far (`row_nodes[i]`: the column node row i is; at or
    past `n_columns` for the logits, which are no one's source): what ranks the features not yet visited."""
    matrix = normalized(rows)
    influence = torch.zeros(n_columns)
    prod = row_weights.clone()
    sources = row_nodes.clamp(max=n_columns)
    for _ in range(n_columns + 1):
        reached = prod @ matrix
        if not reached.any():
            return influence
        influence += reached
        prod = torch.cat([reached, reached.new_zeros(1)])[sources]
    raise RuntimeError("influence did not converge: the adjacency has a cycle")


def node_weights(graph: Graph) -> torch.Tensor:
    weights = torch.zeros(graph.n_nodes)
    weights[graph.logit_index(0):] = torch.tensor([t.probability for t in graph.targets])
    return weights


def node_influence(graph: Graph) -> torch.Tensor:
    return series(normalized(graph.adjacency), node_weights(graph))


@dataclass(frozen=True)
class Pruned:
    nodes: torch.Tensor  # [n_nodes] bool
    edges: torch.Tensor  # [n_nodes, n_nodes] bool
    influence: torch.Tensor  # [n_nodes]
    cumulative: torch.Tensor  # [n_nodes]: the share of all influence carried by nodes at least this influential


def threshold_for(scores: torch.Tensor, share: float) -> torch.Tensor:
    """The score above which the highest scores carry `share` of the total."""
    ordered = scores.sort(descending=True).values
    cumulative = ordered.cumsum(0) / ordered.sum().clamp(min=1e-30)
    return ordered[min(int(torch.searchsorted(cumulative, torch.tensor(share))), len(ordered) - 1)]


def prune(graph: Graph, node_threshold: float = 0.8, edge_threshold: float = 0.98) -> Pruned:
    for name, value in (("node threshold", node_threshold), ("edge threshold", edge_threshold)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"{name} {value} is not between 0 and 1")
    weights = node_weights(graph)
    influence = series(normalized(graph.adjacency), weights)
    fixed = graph.token_index(0)  # tokens and logits from here on are always kept
    nodes = influence >= threshold_for(influence, node_threshold)
    nodes[fixed:] = True
    kept = graph.adjacency.clone()
    kept[~nodes] = 0
    kept[:, ~nodes] = 0
    matrix = normalized(kept)
    edge_scores = matrix * (series(matrix, weights) + weights)[:, None]
    edges = edge_scores >= threshold_for(edge_scores.flatten(), edge_threshold)
    n_features = graph.n_features
    while True:
        before = nodes.clone()
        edges[~nodes] = False
        edges[:, ~nodes] = False
        nodes[:fixed] &= edges[:, :fixed].any(0)  # features and errors must feed something
        nodes[:n_features] &= edges[:n_features].any(1)  # features must be fed
        if torch.equal(nodes, before):
            break
    ordered, order = influence.sort(descending=True)
    cumulative = torch.zeros_like(influence)
    cumulative[order] = ordered.cumsum(0) / ordered.sum().clamp(min=1e-30)
    return Pruned(nodes, edges, influence, cumulative)


def graph_scores(graph: Graph) -> tuple[float, float]:
    """(replacement score, completeness score)."""
    errors = slice(graph.n_features, graph.token_index(0))
    tokens = slice(graph.token_index(0), graph.logit_index(0))
    return scores(graph.adjacency, node_weights(graph), errors, tokens)


def scores(adjacency: torch.Tensor, weights: torch.Tensor, errors: slice, tokens: slice) -> tuple[float, float]:
    """(replacement, completeness) of an adjacency whose rows `errors` and `tokens` are the error and token
    nodes, weighted from the logits by `weights`."""
    matrix = normalized(adjacency)
    influence = series(matrix, weights)
    token_influence, error_influence = influence[tokens].sum(), influence[errors].sum()
    replacement = token_influence / (token_influence + error_influence).clamp(min=1e-30)
    non_error = 1 - matrix[:, errors].sum(dim=-1)
    output = influence + weights
    completeness = (non_error * output).sum() / output.sum().clamp(min=1e-30)
    return float(replacement), float(completeness)


def subgraph_scores(kinds: dict[int, str], edges: list[tuple[int, int, float]], pinned: set[int],
                    probabilities: dict[int, float]) -> tuple[float, float]:
    """The scores of a pinned subgraph of a pruned graph, as Neuronpedia's graph page computes them: its pinned
    features, the error nodes with an edge to or from a pinned node, every token and logit, and the kept edges
    among them. (0, 0) when no feature is pinned. `kinds`: each kept node's kind by its number (features, then
    errors, tokens and logits, in that order of numbers); `probabilities`: each logit node's."""
    if not any(kinds.get(node) == "feature" for node in pinned):
        return 0.0, 0.0
    touching = {a for s, t, _ in edges for a, b in ((s, t), (t, s)) if b in pinned}
    kept = sorted(node for node, kind in kinds.items()
                  if (node in pinned if kind == "feature" else node in touching if kind == "error" else True))
    index = {node: i for i, node in enumerate(kept)}
    adjacency = torch.zeros(len(kept), len(kept), dtype=torch.float64)
    for source, target, weight in edges:
        if source in index and target in index:
            adjacency[index[target], index[source]] = weight
    order = [kinds[node] for node in kept]
    first_token = order.index("token")
    first_error = order.index("error") if "error" in order else first_token
    weights = torch.tensor([probabilities.get(node, 0.0) if kinds[node] == "logit" else 0.0 for node in kept],
                           dtype=torch.float64)
    return scores(adjacency, weights, slice(first_error, first_token),
                  slice(first_token, first_token + order.count("token")))


def ablation_effects(graph: Graph, features: torch.Tensor, target: int = 0) -> torch.Tensor:
    """[len(features)]: the change in the target's logit the graph predicts when each of these feature nodes is
    set to 0. Its effect is followed through the other features linearly (a latent's output moves with its input,
    slope 1 while it stays active); error and token nodes hold still, as in the replacement model."""
    n = graph.n_features
    per_unit = graph.adjacency[:n, :n] / graph.activations.clamp(min=1e-12)[None, :]  # [to, from] per unit of from
    change = -graph.adjacency[:n, features]  # [to, removed]: the direct changes of every feature's input
    total = change.clone()
    for _ in range(graph.n_layers + 1):  # a path climbs a layer per feature
        change = per_unit @ change
        if not change.any():
            break
        total += change
    logit_row = graph.adjacency[graph.logit_index(target), :n]
    return -logit_row[features] + (logit_row / graph.activations.clamp(min=1e-12)) @ total


def strongest_paths(graph: Graph, pruned: Pruned, target: int = 0, n: int = 3) -> list[list[int]]:
    """Up to `n` paths of kept edges from a prompt token through at least one feature to target `target`, the
    strongest first. A path's strength is the product of each edge's share of its target's kept input
    (max-product over the DAG); one path from each of the `n` strongest tokens. A token's own edge to the
    logit is left out: the direct path always wins a product and says nothing about features."""
    edges = torch.where(pruned.edges, graph.adjacency.abs(), torch.zeros(()))
    share = edges / edges.sum(dim=1, keepdim=True).clamp(min=1e-30)  # [target, source]
    logit = graph.logit_index(target)
    strength = torch.zeros(graph.n_nodes)
    strength[logit] = 1.0
    after = torch.full((graph.n_nodes,), -1, dtype=torch.long)
    # Features by layer, highest first (a feature feeds only higher layers and the logits), then the tokens.
    features = sorted(range(graph.n_features), key=lambda node: -int(graph.features[node, 0]))
    tokens = list(range(graph.token_index(0), graph.logit_index(0)))
    for node in features + tokens:
        through = share[:, node] * strength  # via each node this one feeds
        if node >= graph.token_index(0):
            through[graph.logit_index(0):] = 0
        best = int(through.argmax())
        if through[best] > 0:
            strength[node], after[node] = through[best], best
    paths = []
    for start in sorted((t for t in tokens if strength[t] > 0), key=lambda node: -float(strength[node]))[:n]:
        path = [start]
        while path[-1] != logit:
            path.append(int(after[path[-1]]))
        paths.append(path)
    return paths
