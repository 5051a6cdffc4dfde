"""What investigations, questions, audits and evals found: experiments, audits and their candidates, eval rows.
Each is written in one transaction with its run's end."""

import json

import duckdb

from tools.catalog.connection import insert_row
from tools.catalog.labels import LabelTables
from tools.catalog.runs import RunTables


class FindingTables(LabelTables, RunTables):
    def record_investigation(self, run_id: str, explanation: dict, scores: list[dict], experiments: list[dict]) -> None:
        """An investigation's explanation, scores and experiment log, and its run's end, all or nothing."""
        with self.transaction() as con:
            self._insert_labels(con, [explanation], scores)
            self._finish_experiments(con, run_id, experiments, explanation["status"] == "ok", explanation["error"])

    def record_answer(self, run_id: str, experiments: list[dict], error: str | None = None) -> None:
        """An `interp ask` question's experiment log (its answer the last LLM step) and its run's end."""
        with self.transaction() as con:
            self._finish_experiments(con, run_id, experiments, error is None, error)

    def record_experiments(self, experiments: list[dict]) -> None:
        """Experiment rows of a run still going (an MCP session writes each call as it happens)."""
        with self.transaction() as con:
            for row in experiments:
                insert_row(con, "experiments", row)

    def record_audit(self, audit: dict, candidates: list[dict]) -> None:
        """One concept's audit and its candidates, together."""
        with self.transaction() as con:
            insert_row(con, "audits", audit)
            for row in candidates:
                insert_row(con, "audit_candidates", row)

    def audit_texts(self, concept_key: str) -> dict | None:
        """The texts an earlier audit used for this concept, so a rerun uses exactly them."""
        row = self._one("SELECT positive, negative, texts_by FROM audits WHERE concept_key = ? "
                        "ORDER BY created_at DESC LIMIT 1", [concept_key])
        return row and {"positive": json.loads(row["positive"]), "negative": json.loads(row["negative"]),
                        "texts_by": row["texts_by"]}

    def record_eval(self, run_id: str, eval_name: str, rows: list[dict]) -> None:
        """An eval's table and its run's end, together."""
        with self.transaction() as con:
            for row in rows:
                insert_row(con, "evals", row | {"run_id": run_id, "eval": eval_name})
            self.set_run_status(run_id, "complete")

    def _finish_experiments(self, con: duckdb.DuckDBPyConnection, run_id: str, experiments: list[dict], ok: bool,
                            error: str | None) -> None:
        for row in experiments:
            insert_row(con, "experiments", row)
        self.set_run_status(run_id, "complete" if ok else "failed", error)
