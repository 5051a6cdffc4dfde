"""The label tables: explanations (with their embeddings) and scores; what is labeled, searched and spent."""

import duckdb

from tools.catalog.connection import Connection, insert_table, rows_table


def explanation_key(explanation: dict) -> tuple:
    """What one explanation may exist per: the feature, and the explainer, LLM and prompt that wrote it."""
    return tuple(explanation[k] for k in ("feature_set_id", "feature", "explainer", "llm", "prompt_hash"))


class LabelTables(Connection):
    def labeled(self, feature_set_id: str, explainer: str, llm: str, prompt_hash: str) -> dict[int, dict]:
        """The latest successful explanation of each feature under one explainer, LLM and prompt."""
        rows = self.all_rows(
            "SELECT feature, explanation_id, text FROM explanations WHERE feature_set_id = ? AND explainer = ? "
            "AND llm = ? AND prompt_hash = ? AND status = 'ok' QUALIFY row_number() OVER "
            "(PARTITION BY feature ORDER BY created_at DESC, explanation_id) = 1",
            [feature_set_id, explainer, llm, prompt_hash])
        return {row["feature"]: row for row in rows}

    def explainers(self, feature_set_id: str) -> list[str]:
        return [row[0] for row in self.con.execute(
            "SELECT DISTINCT explainer FROM explanations WHERE feature_set_id = ? AND status = 'ok' ORDER BY 1",
            [feature_set_id]).fetchall()]

    def explainer_keys(self, feature_set_id: str, explainer: str) -> list[tuple[str, str]]:
        """(llm, prompt_hash) of every key under which `explainer` wrote ok explanations of the set."""
        return [tuple(row) for row in self.con.execute(
            "SELECT DISTINCT llm, prompt_hash FROM explanations WHERE feature_set_id = ? AND explainer = ? AND "
            "status = 'ok' ORDER BY ALL", [feature_set_id, explainer]).fetchall()]

    def explanation_vectors(self, explanation_ids: list[str], embedder: str) -> dict[str, list[float]]:
        """The stored embedding of each of these explanations that `embedder` made, by text."""
        if not explanation_ids:
            return {}
        rows = self.con.execute(
            "SELECT text, embedding FROM explanations WHERE list_contains(?, explanation_id) AND embedder = ? "
            "AND embedding IS NOT NULL AND text IS NOT NULL", [explanation_ids, embedder]).fetchall()
        return {text: vector for text, vector in rows}

    def scored(self, explanation_ids: list[str]) -> set[tuple[str, str, str, str]]:
        """(explanation_id, scorer, llm, prompt_hash) of every successful score of these explanations."""
        if not explanation_ids:
            return set()
        rows = self.con.execute(
            "SELECT DISTINCT explanation_id, scorer, llm, prompt_hash FROM scores "
            "WHERE status = 'ok' AND list_contains(?, explanation_id)", [explanation_ids]).fetchall()
        return {tuple(row) for row in rows}

    def record_label(self, explanation: dict | None, scores: list[dict]) -> bool:
        """A feature's new explanation (if any) and its scores, all or nothing. False, and nothing written,
        when another writer already explained the feature under the same explainer, LLM and prompt: each
        key keeps one explanation."""
        return self.record_labels([(explanation, scores)])[0]

    def record_labels(self, labels: list[tuple[dict | None, list[dict]]]) -> list[bool]:
        """`record_label` for many features in one transaction and one insert per table: a labeling run
        commits every feature that finished together at once."""
        with self.transaction() as con:
            taken = self._explained(con, [explanation for explanation, _ in labels
                                          if explanation is not None and explanation["status"] == "ok"])
            written, explanations, scores = [], [], []
            for explanation, feature_scores in labels:
                key = None if explanation is None or explanation["status"] != "ok" else explanation_key(explanation)
                if key is not None and key in taken:
                    written.append(False)
                    continue
                if key is not None:
                    taken.add(key)  # a second explanation of one key in the same batch loses, as it would alone
                written.append(True)
                explanations += [explanation] if explanation is not None else []
                scores += feature_scores
            self._insert_labels(con, explanations, scores)
        return written

    @staticmethod
    def _insert_labels(con: duckdb.DuckDBPyConnection, explanations: list[dict], scores: list[dict]) -> None:
        for table_name, rows in (("explanations", explanations), ("scores", scores)):
            if rows:
                insert_table(con, table_name, rows_table(rows))

    @staticmethod
    def _explained(con: duckdb.DuckDBPyConnection, explanations: list[dict]) -> set[tuple]:
        """The keys among these explanations' that already have an ok explanation in the catalog."""
        if not explanations:
            return set()
        rows = con.execute(
            "SELECT feature_set_id, feature, explainer, llm, prompt_hash FROM explanations WHERE status = 'ok' "
            "AND list_contains(?, feature)", [sorted({e["feature"] for e in explanations})]).fetchall()
        wanted = {explanation_key(e) for e in explanations}
        return {tuple(row) for row in rows} & wanted

    def label_summary(self, feature_set_id: str, explainer: str, llm: str, prompt_hash: str,
                      features: list[int]) -> list[dict]:
        """Per feature: its latest explanation under this key (ok or failed) and its scores, newest first."""
        return self.all_rows(
            "WITH latest AS (SELECT * FROM explanations WHERE feature_set_id = ? AND explainer = ? AND llm = ? "
            "AND prompt_hash = ? AND list_contains(?, feature) QUALIFY row_number() OVER "
            "(PARTITION BY feature ORDER BY status = 'ok' DESC, created_at DESC) = 1) "
            "SELECT l.feature, l.status, l.text, l.error, l.explanation_id, "
            "list({'scorer': s.scorer, 'llm': s.llm, 'metric': s.metric, 'value': s.value, 'ci_low': s.ci_low, "
            "'ci_high': s.ci_high, 'n': s.n, 'status': s.status, 'error': s.error} ORDER BY s.created_at DESC) "
            "FILTER (WHERE s.scorer IS NOT NULL) AS scores "
            "FROM latest l LEFT JOIN scores s USING (explanation_id) "
            "GROUP BY ALL ORDER BY l.feature",
            [feature_set_id, explainer, llm, prompt_hash, features])

    def score_values(self, feature_set_id: str, explainer: tuple[str, str, str], scorers: list[tuple[str, str, str]],
                     features: list[int]) -> dict[tuple[str, str], dict[int, float]]:
        """{(scorer, metric): {feature: value}}: the latest ok score of each feature's latest ok explanation by
        `explainer` (name, LLM, prompt hash), from exactly these scorers (name, LLM, prompt hash)."""
        rows = self.con.execute(
            "WITH latest AS (SELECT feature, explanation_id FROM explanations WHERE feature_set_id = ? AND "
            "explainer = ? AND llm = ? AND prompt_hash = ? AND status = 'ok' AND list_contains(?, feature) "
            "QUALIFY row_number() OVER (PARTITION BY feature ORDER BY created_at DESC, explanation_id) = 1) "
            "SELECT l.feature, s.scorer, s.metric, s.value FROM latest l JOIN scores s USING (explanation_id) "
            "WHERE s.status = 'ok' AND s.value IS NOT NULL AND isfinite(s.value) AND "
            "list_contains(?, s.scorer || '|' || s.llm || '|' || s.prompt_hash) "
            "QUALIFY row_number() OVER (PARTITION BY l.feature, s.scorer, s.metric ORDER BY s.created_at DESC) = 1",
            [feature_set_id, *explainer, features, ["|".join(key) for key in scorers]]).fetchall()
        values: dict[tuple[str, str], dict[int, float]] = {}
        for feature, scorer, metric, value in rows:
            values.setdefault((scorer, metric), {})[feature] = value
        return values

    def explanation_count(self, feature_set_id: str) -> int:
        if not self.has_labels():
            return 0
        return self._value("SELECT count(*) FROM explanations WHERE feature_set_id = ? AND status = 'ok'",
                           [feature_set_id])

    def latest_explanations(self, feature_set_id: str) -> dict[int, dict]:
        """Each labeled feature's latest usable explanation: {'text', 'scores': {'scorer metric': value}}."""
        if not self.has_labels():
            return {}
        rows = self.all_rows(
            "WITH latest AS (SELECT feature, arg_max(explanation_id, created_at) AS explanation_id, "
            "arg_max(text, created_at) AS text FROM explanations WHERE feature_set_id = ? AND status = 'ok' "
            "GROUP BY feature) SELECT l.feature, l.text, s.scorer, s.metric, s.value FROM latest l "
            "LEFT JOIN scores s ON s.explanation_id = l.explanation_id AND s.status = 'ok'", [feature_set_id])
        out: dict[int, dict] = {}
        for row in rows:
            entry = out.setdefault(row["feature"], {"text": row["text"], "scores": {}})
            if row["scorer"] is not None:
                entry["scores"][f"{row['scorer']} {row['metric']}"] = row["value"]
        return out

    def feature_explanations(self, feature_set_id: str, feature: int) -> list[dict]:
        """Every usable explanation of one feature, oldest first, each with its usable scores."""
        if not self.has_labels():
            return []
        rows = self.all_rows(
            "SELECT e.explanation_id, e.text, e.explainer, e.llm, e.prompt_hash, e.prompt_tokens, "
            "e.completion_tokens, e.embedder, e.run_id, e.created_at, s.scorer, s.metric, s.value, s.ci_low, "
            "s.ci_high, s.n, s.llm AS scorer_llm FROM explanations e LEFT JOIN scores s "
            "ON s.explanation_id = e.explanation_id "
            "AND s.status = 'ok' WHERE e.feature_set_id = ? AND e.feature = ? AND e.status = 'ok' "
            "ORDER BY e.created_at, e.explanation_id, s.scorer, s.metric", [feature_set_id, feature])
        out: dict[str, dict] = {}
        for row in rows:
            entry = out.setdefault(row["explanation_id"], {key: row[key] for key in (
                "explanation_id", "text", "explainer", "llm", "prompt_hash", "prompt_tokens", "completion_tokens",
                "embedder", "run_id", "created_at")} | {"scores": []})
            if row["scorer"] is not None:
                entry["scores"].append({key: row[key] for key in ("scorer", "metric", "value", "ci_low", "ci_high",
                                                                  "n", "scorer_llm")})
        return list(out.values())

    def has_labels(self) -> bool:
        """False for a catalog written before labeling existed (schema 2) and opened read-only, so never
        upgraded: it has no explanations table yet."""
        return self.has_table("explanations")

    def search(self, query: list[float], embedder: str, limit: int, feature_set_id: str | None = None) -> list[dict]:
        """Explanations nearest the query vector by cosine similarity (brute force, built into DuckDB)."""
        if not self.has_labels():
            return []
        dim = len(query)
        return self.all_rows(
            f"SELECT e.feature_set_id, e.feature, e.text, e.explainer, "
            f"array_cosine_similarity(e.embedding::FLOAT[{dim}], ?::FLOAT[{dim}]) AS similarity "
            f"FROM explanations e WHERE e.status = 'ok' AND e.embedder = ? AND len(e.embedding) = {dim} "
            f"AND (? IS NULL OR e.feature_set_id = ?) ORDER BY similarity DESC LIMIT ?",
            [query, embedder, feature_set_id, feature_set_id, limit])

    def token_usage(self, run_id: str) -> list[dict]:
        """Mean LLM tokens per labeled feature, for the explainer and for each scorer of one run."""
        return self.all_rows(
            "SELECT 'explainer' AS stage, explainer AS name, count(*) AS features, avg(prompt_tokens) AS prompt, "
            "avg(completion_tokens) AS completion FROM explanations WHERE run_id = ? AND status = 'ok' GROUP BY ALL "
            "UNION ALL SELECT 'scorer', scorer, count(DISTINCT explanation_id), "
            "sum(prompt_tokens) / count(DISTINCT explanation_id), "
            "sum(completion_tokens) / count(DISTINCT explanation_id) "
            "FROM scores WHERE run_id = ? AND status = 'ok' GROUP BY ALL ORDER BY 1, 2",
            [run_id, run_id])
