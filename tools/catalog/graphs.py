"""Attribution graphs: a graph row (prompt, targets, settings, scores, the transcoder set it went through), its
kept nodes and its pruned edges. Written in one transaction with its run's end."""

import json
import uuid

from tools.catalog.connection import insert_table, rows_table
from tools.catalog.labels import LabelTables
from tools.catalog.runs import RunTables, new_run_id
from tools.errors import InterpError


def first_logit_node(graph: dict) -> int:
    """A cataloged graph's first logit node: after its features, an error node per layer and position, and its
    tokens (the order tools/attribution/graph.py numbers nodes in)."""
    return graph["n_features"] + (graph["n_layers"] + 1) * len(graph["tokens"])


def require_kept(graph_id: str, nodes: list[int], kept: set[int], why: str) -> None:
    """Refuses node numbers the graph did not keep, naming the first few and `why` they must be kept."""
    strangers = sorted(set(nodes) - kept)
    if strangers:
        raise InterpError(f"graph {graph_id} has no nodes {strangers[:5]}; {why}")


class GraphTables(LabelTables, RunTables):
    def record_graph(self, graph: dict, nodes: list[dict], edges: list[dict]) -> None:
        with self.transaction() as con:
            insert_table(con, "graphs", rows_table([graph]))
            if nodes:
                insert_table(con, "graph_nodes", rows_table([node | {"graph_id": graph["graph_id"]} for node in nodes]))
            if edges:
                insert_table(con, "graph_edges", rows_table([edge | {"graph_id": graph["graph_id"]} for edge in edges]))
            self.set_run_status(graph["run_id"], "complete")

    def graphs(self) -> list[dict]:
        if not self._has_graphs():
            return []
        return self.all_rows("SELECT graph_id, prompt, targets, n_features, replacement_score, completeness_score, "
                             "check_r, created_at FROM graphs ORDER BY created_at DESC")

    def graph(self, ref: str) -> dict:
        """A graph by id or unique id prefix; 'latest' is the newest."""
        rows = [] if not self._has_graphs() else self.all_rows(
            "SELECT * FROM graphs WHERE ? = 'latest' OR graph_id = ? OR starts_with(graph_id, ?) "
            "ORDER BY created_at DESC", [ref, ref, ref])
        exact = [row for row in rows if row["graph_id"] == ref]
        if exact or (rows and (ref == "latest" or len(rows) == 1)):
            row = (exact or rows)[0]
            return row | {"targets": json.loads(row["targets"]), "settings": json.loads(row["settings"])}
        if not rows:
            raise InterpError(f"no graph '{ref}' in catalog '{self.path}'; make one with `interp trace \"PROMPT\"`")
        raise InterpError(f"graph '{ref}' is ambiguous; use one of: {', '.join(row['graph_id'] for row in rows)}")

    def graph_nodes(self, graph_id: str) -> list[dict]:
        return self.all_rows("SELECT * FROM graph_nodes WHERE graph_id = ? ORDER BY node", [graph_id])

    def graph_node(self, graph_id: str, node: int) -> dict:
        row = self._one("SELECT * FROM graph_nodes WHERE graph_id = ? AND node = ?", [graph_id, node])
        if row is None:
            raise InterpError(f"no graph node {node} in graph {graph_id}; its kept nodes are listed by "
                              f"/api/graphs/{graph_id}")
        return row

    def graph_edges(self, graph_id: str) -> list[dict]:
        return self.all_rows("SELECT source, target, weight FROM graph_edges WHERE graph_id = ? "
                             "ORDER BY abs(weight) DESC", [graph_id])

    def graph_latents(self, graph_id: str, feature_set_id: str) -> list[int]:
        """The latents of a graph's kept feature nodes that belong to this feature set (the set cached from the
        graph's transcoders at the nodes' layer), for labeling just those."""
        rows = self.all_rows(
            "SELECT DISTINCT n.feature FROM graph_nodes n JOIN graphs g USING (graph_id) JOIN feature_sets f "
            "ON f.source_sha256 = g.transcoders_sha256 AND f.hook = 'mlp_in.' || n.layer "
            "WHERE n.graph_id = ? AND n.kind = 'feature' AND f.feature_set_id = ? ORDER BY n.feature",
            [graph_id, feature_set_id])
        return [row["feature"] for row in rows]

    def graph_groups(self, graph_id: str) -> list[dict]:
        return self.all_rows("SELECT name, nodes FROM graph_groups WHERE graph_id = ? ORDER BY created_at, name",
                             [graph_id])

    def save_graph_group(self, graph_id: str, name: str, nodes: list[int]) -> None:
        """A named supernode; saving a name again replaces its members, and no members deletes it."""
        require_kept(graph_id, nodes, {row["node"] for row in self.graph_nodes(graph_id)},
                     "a group holds the graph's kept nodes")
        with self.transaction() as con:
            con.execute("DELETE FROM graph_groups WHERE graph_id = ? AND name = ?", [graph_id, name])
            if nodes:
                con.execute("INSERT INTO graph_groups (graph_id, name, nodes) VALUES (?, ?, ?)",
                            [graph_id, name, sorted(set(nodes))])

    def rename_graph_group(self, graph_id: str, name: str, new_name: str) -> None:
        """A group under a new name, keeping its members and its place in the list; refused over another group."""
        names = {group["name"] for group in self.graph_groups(graph_id)}
        if name not in names:
            raise InterpError(f"graph {graph_id} has no group '{name}'; its groups are {sorted(names)}")
        if new_name != name and new_name in names:
            raise InterpError(f"graph {graph_id} already has a group '{new_name}'; ungroup or rename that one first")
        with self.transaction() as con:
            con.execute("UPDATE graph_groups SET name = ? WHERE graph_id = ? AND name = ?", [new_name, graph_id, name])

    def graph_pins(self, graph_id: str) -> list[int]:
        """The nodes last pinned in the graph page, which `interp export graph` writes as `pinnedIds`."""
        if not self.has_table("graph_views"):
            return []
        row = self._one("SELECT pinned FROM graph_views WHERE graph_id = ?", [graph_id])
        return list(row["pinned"]) if row else []

    def save_graph_pins(self, graph_id: str, nodes: list[int]) -> None:
        require_kept(graph_id, nodes, {row["node"] for row in self.graph_nodes(graph_id)},
                     "pins are the graph's kept nodes")
        with self.transaction() as con:
            con.execute("DELETE FROM graph_views WHERE graph_id = ?", [graph_id])
            con.execute("INSERT INTO graph_views (graph_id, pinned) VALUES (?, ?)",
                        [graph_id, list(dict.fromkeys(nodes))])

    def record_human_label(self, feature_set_id: str, feature: int, text: str, settings: dict,
                           package_versions: dict) -> str:
        """A person's label of a feature, as an explanation by explainer `human` (no LLM, no prompt) with its own
        `annotate` run (`settings` say where it was written), beside the machine labels and scored like them by
        `interp label --score-only human`. A person's new label replaces their earlier one of the same feature
        (and its scores): one key keeps one explanation. Returns the run's id."""
        explanation_id, run_id = uuid.uuid4().hex[:16], new_run_id()
        with self.transaction() as con:
            self.start_run(run_id, "annotate", settings, run_id, None, package_versions)
            old = [row[0] for row in con.execute(
                "SELECT explanation_id FROM explanations WHERE feature_set_id = ? AND feature = ? AND explainer = "
                "'human'", [feature_set_id, feature]).fetchall()]
            if old:
                con.execute("DELETE FROM scores WHERE list_contains(?, explanation_id)", [old])
                con.execute("DELETE FROM explanations WHERE list_contains(?, explanation_id)", [old])
            insert_table(con, "explanations", rows_table([{
                "explanation_id": explanation_id, "feature_set_id": feature_set_id, "feature": feature,
                "explainer": "human", "llm": "", "prompt_hash": "", "status": "ok", "text": text,
                "prompt_tokens": 0, "completion_tokens": 0, "run_id": run_id}]))
            self.set_run_status(run_id, "complete")
        return run_id

    def transcoder_feature_sets(self, sha256: str) -> dict[int, str]:
        """The newest cached feature set of each layer of a transcoder set, by layer."""
        rows = self.all_rows("SELECT hook, arg_max(feature_set_id, created_at) AS feature_set_id FROM feature_sets "
                             "WHERE source_sha256 = ? AND starts_with(hook, 'mlp_in.') GROUP BY hook", [sha256])
        return {int(row["hook"].split(".")[1]): row["feature_set_id"] for row in rows}

    def transcoder_labels(self, sha256: str) -> dict[tuple[int, int], str]:
        """(layer, latent) -> its latest label, over every cached and labeled layer of a transcoder set."""
        labels: dict[tuple[int, int], str] = {}
        for layer, set_id in self.transcoder_feature_sets(sha256).items():
            labels |= {(layer, latent): entry["text"] for latent, entry in self.latest_explanations(set_id).items()}
        return labels

    def transcoder_label_vectors(self, sha256: str) -> dict[tuple[int, int], list[float]]:
        """(layer, latent) -> the embedding of its latest embedded label, over the cached layers of a set."""
        vectors: dict[tuple[int, int], list[float]] = {}
        if not self.has_labels():
            return vectors
        for layer, set_id in self.transcoder_feature_sets(sha256).items():
            rows = self.all_rows("SELECT feature, arg_max(embedding, created_at) AS embedding FROM explanations "
                                 "WHERE feature_set_id = ? AND status = 'ok' AND embedding IS NOT NULL "
                                 "GROUP BY feature", [set_id])
            vectors |= {(layer, row["feature"]): list(row["embedding"]) for row in rows}
        return vectors

    def _has_graphs(self) -> bool:
        """False for a catalog from before graphs, opened read-only (never upgraded)."""
        return self.has_table("graphs")
