"""The label tables: explanations (with their embeddings) and scores; what is labeled, searched and spent."""

import duckdb

from tools.catalog.connection import Connection, insert_row


class LabelTables(Connection):
    def labeled(self, feature_set_id: str, explainer: str, llm: str, prompt_hash: str) -> dict[int, dict]:
        """The latest successful explanation of each feature under one explainer, LLM and prompt."""
        rows = self._all(
            "SELECT feature, explanation_id, text FROM explanations WHERE feature_set_id = ? AND explainer = ? "
            "AND llm = ? AND prompt_hash = ? AND status = 'ok' QUALIFY row_number() OVER "
            "(PARTITION BY feature ORDER BY created_at DESC, explanation_id) = 1",
            [feature_set_id, explainer, llm, prompt_hash])
        return {row["feature"]: row for row in rows}

    def scored(self, explanation_ids: list[str]) -> set[tuple[str, str, str, str]]:
        """(explanation_id, scorer, llm, prompt_hash) of every successful score of these explanations."""
        if not explanation_ids:
            return set()
        rows = self.con.execute(
            "SELECT DISTINCT explanation_id, scorer, llm, prompt_hash FROM scores "
            "WHERE status = 'ok' AND list_contains(?, explanation_id)", [explanation_ids]).fetchall()
        return {tuple(row) for row in rows}

    @staticmethod
    def _insert_label(con: duckdb.DuckDBPyConnection, explanation: dict | None, scores: list[dict]) -> None:
        if explanation is not None:
            insert_row(con, "explanations", explanation)
        for score in scores:
            insert_row(con, "scores", score)

    def record_label(self, explanation: dict | None, scores: list[dict]) -> bool:
        """A feature's new explanation (if any) and its scores, all or nothing. False, and nothing written,
        when another writer already explained the feature under the same explainer, LLM and prompt: each
        key keeps one explanation."""
        with self.transaction() as con:
            if explanation is not None and explanation["status"] == "ok" and self._value(
                    "SELECT count(*) FROM explanations WHERE feature_set_id = ? AND feature = ? AND explainer = ? "
                    "AND llm = ? AND prompt_hash = ? AND status = 'ok'",
                    [explanation[k] for k in ("feature_set_id", "feature", "explainer", "llm", "prompt_hash")]):
                return False
            self._insert_label(con, explanation, scores)
        return True

    def label_summary(self, feature_set_id: str, explainer: str, llm: str, prompt_hash: str,
                      features: list[int]) -> list[dict]:
        """Per feature: its latest explanation under this key (ok or failed) and its scores, newest first."""
        return self._all(
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

    def explanation_count(self, feature_set_id: str) -> int:
        if not self.has_labels():
            return 0
        return self._value("SELECT count(*) FROM explanations WHERE feature_set_id = ? AND status = 'ok'",
                           [feature_set_id])

    def latest_explanations(self, feature_set_id: str) -> dict[int, dict]:
        """Each labeled feature's latest usable explanation: {'text', 'scores': {'scorer metric': value}}."""
        if not self.has_labels():
            return {}
        rows = self._all(
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

    def has_labels(self) -> bool:
        """False for a catalog written before labeling existed (schema 2) and opened read-only, so never
        upgraded: it has no explanations table yet."""
        return bool(self._value(
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'explanations'", []))

    def search(self, query: list[float], embedder: str, limit: int, feature_set_id: str | None = None) -> list[dict]:
        """Explanations nearest the query vector by cosine similarity (brute force, built into DuckDB)."""
        if not self.has_labels():
            return []
        dim = len(query)
        return self._all(
            f"SELECT e.feature_set_id, e.feature, e.text, e.explainer, "
            f"array_cosine_similarity(e.embedding::FLOAT[{dim}], ?::FLOAT[{dim}]) AS similarity "
            f"FROM explanations e WHERE e.status = 'ok' AND e.embedder = ? AND len(e.embedding) = {dim} "
            f"AND (? IS NULL OR e.feature_set_id = ?) ORDER BY similarity DESC LIMIT ?",
            [query, embedder, feature_set_id, feature_set_id, limit])

    def token_usage(self, run_id: str) -> list[dict]:
        """Mean LLM tokens per labeled feature, for the explainer and for each scorer of one run."""
        return self._all(
            "SELECT 'explainer' AS stage, explainer AS name, count(*) AS features, avg(prompt_tokens) AS prompt, "
            "avg(completion_tokens) AS completion FROM explanations WHERE run_id = ? AND status = 'ok' GROUP BY ALL "
            "UNION ALL SELECT 'scorer', scorer, count(DISTINCT explanation_id), "
            "sum(prompt_tokens) / count(DISTINCT explanation_id), "
            "sum(completion_tokens) / count(DISTINCT explanation_id) "
            "FROM scores WHERE run_id = ? AND status = 'ok' GROUP BY ALL ORDER BY 1, 2",
            [run_id, run_id])
