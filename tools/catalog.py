"""The DuckDB catalog: every run, model, feature set, feature, window and example, traceable to its run.

One process writes at a time (DuckDB locks the file); callers open the catalog for a short write
and close it, so `interp features` can read between runs. A feature set and all its rows are written
in one transaction together with the run's `complete` status, so an interrupted run never leaves a
feature set that looks finished.
"""

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import duckdb
import pyarrow as pa

from tools.errors import InterpError

SCHEMA_VERSION = 7
LOCK_WAIT_SECONDS = 60.0
LOCK_POLL_SECONDS = 0.25

SCHEMA = """
CREATE TABLE IF NOT EXISTS schema_info (key VARCHAR PRIMARY KEY, value VARCHAR NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id VARCHAR PRIMARY KEY,
    kind VARCHAR NOT NULL,
    status VARCHAR NOT NULL,            -- running | interrupted | failed | complete
    config JSON NOT NULL,
    config_hash VARCHAR NOT NULL,
    model_id VARCHAR,
    corpus JSON,
    tokens BIGINT,
    package_versions JSON,
    error VARCHAR,
    started_at TIMESTAMP NOT NULL DEFAULT current_timestamp,
    finished_at TIMESTAMP
);
CREATE TABLE IF NOT EXISTS models (
    model_id VARCHAR PRIMARY KEY,       -- the weights' sha256
    name VARCHAR NOT NULL,
    path VARCHAR NOT NULL,
    architecture VARCHAR NOT NULL,
    n_layers INTEGER NOT NULL,
    d_model INTEGER NOT NULL,
    config JSON NOT NULL,
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS feature_sets (
    feature_set_id VARCHAR PRIMARY KEY,
    model_id VARCHAR NOT NULL,
    hook VARCHAR NOT NULL,
    hf_module VARCHAR NOT NULL,
    kind VARCHAR NOT NULL,              -- neuron | residual | attention | sae
    n_features INTEGER NOT NULL,
    window_length INTEGER NOT NULL,
    n_windows INTEGER NOT NULL,
    tokens BIGINT NOT NULL,
    source_path VARCHAR,
    source_sha256 VARCHAR,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS features (
    feature_set_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    max_act FLOAT,
    min_act FLOAT,
    mean_act DOUBLE,
    density DOUBLE,                     -- fraction of real tokens above the threshold
    window_density DOUBLE,              -- fraction of windows with any token above it
    n_tokens BIGINT NOT NULL,
    hist_max DOUBLE,                    -- histogram bins split (0, hist_max] evenly
    hist_counts BIGINT[],
    quantile_edges DOUBLE[],
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (feature_set_id, feature)
);
CREATE TABLE IF NOT EXISTS windows (
    feature_set_id VARCHAR NOT NULL,
    window_id INTEGER NOT NULL,
    token_ids INTEGER[] NOT NULL,
    tokens VARCHAR[] NOT NULL,
    run_id VARCHAR NOT NULL,
    PRIMARY KEY (feature_set_id, window_id)
);
CREATE TABLE IF NOT EXISTS examples (
    feature_set_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    bucket VARCHAR NOT NULL,            -- top | quantile | random
    rank INTEGER NOT NULL,              -- order within the bucket (top: by activation)
    quantile INTEGER,                   -- quantile index for bucket = quantile
    split VARCHAR NOT NULL,             -- explain | score: explainers never see score examples
    window_id INTEGER NOT NULL,
    max_act FLOAT NOT NULL,
    acts FLOAT[] NOT NULL,              -- one value per window token; 0 at special tokens
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS sae_evals (
    run_id VARCHAR NOT NULL,
    model_id VARCHAR NOT NULL,
    hook VARCHAR NOT NULL,
    sae_path VARCHAR NOT NULL,
    sae_sha256 VARCHAR NOT NULL,        -- joins feature_sets.source_sha256
    tokens BIGINT NOT NULL,             -- held-out real tokens evaluated
    fvu DOUBLE,
    mean_l0 DOUBLE,
    dead_fraction DOUBLE,
    loss_clean DOUBLE,
    loss_spliced DOUBLE,
    loss_zero_ablated DOUBLE,
    loss_increase DOUBLE,
    loss_recovered DOUBLE,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS explanations (
    explanation_id VARCHAR PRIMARY KEY,
    feature_set_id VARCHAR NOT NULL,
    feature INTEGER NOT NULL,
    explainer VARCHAR NOT NULL,         -- oneshot | evidence | token-stats
    llm VARCHAR NOT NULL,               -- backend and model; '' for explainers without one
    prompt_hash VARCHAR NOT NULL,       -- sha256 prefix of the prompt file; '' without one
    status VARCHAR NOT NULL,            -- ok | failed
    text VARCHAR,
    error VARCHAR,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    embedding FLOAT[],                  -- unit length; cast to FLOAT[n] for array_cosine_similarity
    embedder VARCHAR,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS scores (
    explanation_id VARCHAR NOT NULL,
    scorer VARCHAR NOT NULL,            -- simulation | detection | fuzzing | embedding
    metric VARCHAR NOT NULL,            -- pearson | balanced_accuracy | auroc; '' when failed
    llm VARCHAR NOT NULL,
    prompt_hash VARCHAR NOT NULL,
    status VARCHAR NOT NULL,            -- ok | failed
    value DOUBLE,
    n INTEGER,                          -- held-out examples the value rests on
    ci_low DOUBLE,                      -- 95% bootstrap interval
    ci_high DOUBLE,
    details JSON,
    error VARCHAR,
    prompt_tokens BIGINT NOT NULL,
    completion_tokens BIGINT NOT NULL,
    run_id VARCHAR NOT NULL,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS experiments (
    explanation_id VARCHAR,             -- the explanation an investigation arrived at; NULL for `interp ask`
    step INTEGER NOT NULL,
    tool VARCHAR NOT NULL,              -- a tool name, or llm:<step> for what the LLM wrote
    arguments JSON NOT NULL,
    ok BOOLEAN NOT NULL,                -- false: invalid arguments or a failed call, never run
    result VARCHAR NOT NULL,            -- exactly the text the LLM was shown (or wrote)
    seconds DOUBLE NOT NULL,
    run_id VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS audits (
    run_id VARCHAR NOT NULL,
    feature_set_id VARCHAR NOT NULL,
    concept VARCHAR NOT NULL,
    concept_key VARCHAR NOT NULL,       -- hash of name + description: written texts are reused by it
    description VARCHAR NOT NULL,
    positive JSON NOT NULL,             -- the texts used, from the file or written by the LLM
    negative JSON NOT NULL,
    texts_by VARCHAR NOT NULL,          -- 'file', or the LLM that wrote the missing texts
    probe_auroc DOUBLE, probe_ci_low DOUBLE, probe_ci_high DOUBLE, probe_p_value DOUBLE,
    mean_diff_auroc DOUBLE, mean_diff_ci_low DOUBLE, mean_diff_ci_high DOUBLE,
    n_texts INTEGER NOT NULL,
    verdict VARCHAR NOT NULL,           -- represented | weakly represented | not found
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS audit_candidates (
    run_id VARCHAR NOT NULL,
    feature_set_id VARCHAR NOT NULL,
    concept VARCHAR NOT NULL,
    rank INTEGER NOT NULL,
    feature INTEGER NOT NULL,
    found_by JSON NOT NULL,             -- search | aligned | active
    explanation VARCHAR,
    explanation_scores JSON,            -- the explanation's own scores from its label run
    similarity DOUBLE,
    activation_auroc DOUBLE,
    alignment DOUBLE,
    ablation DOUBLE,                    -- readout drop on positive texts, share of the positive-negative gap
    steering DOUBLE,                    -- readout rise on negative texts, same scale
    confidence DOUBLE,
    verdict VARCHAR NOT NULL
);
CREATE TABLE IF NOT EXISTS evals (
    run_id VARCHAR NOT NULL,
    eval VARCHAR NOT NULL,              -- planted | compare
    subject VARCHAR NOT NULL,           -- 'explainer NAME (LLM)', 'scorer NAME', or a compared configuration
    metric VARCHAR NOT NULL,
    value DOUBLE,
    n INTEGER NOT NULL,
    ci_low DOUBLE,
    ci_high DOUBLE,
    details JSON,
    created_at TIMESTAMP NOT NULL DEFAULT current_timestamp
);
"""


@dataclass(frozen=True)
class FeatureSetRows:
    """Everything one caching run adds, written in one transaction."""

    feature_set: dict
    features: pa.Table
    windows: pa.Table
    examples: pa.Table


def insert_row(con: duckdb.DuckDBPyConnection, table: str, row: dict, on_conflict: str = "") -> None:
    """One row from a dict whose keys are column names (ours, never user input)."""
    placeholders = ", ".join(f"${name}" for name in row)
    con.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({placeholders}) {on_conflict}", row)


def check_catalog_path(path: Path) -> None:
    """Fail before any work if the catalog could not be opened or created; never creates it."""
    if path.exists():
        if path.is_dir():
            raise InterpError(f"catalog path '{path}' is a directory, not a DuckDB file")
        with Catalog(path, read_only=True):
            return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InterpError(f"cannot create catalog '{path}': folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise InterpError(f"cannot create catalog '{path}': folder '{parent}' is not writable")


class Catalog:
    def __init__(self, path: Path | str, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS):
        """Opens the catalog, waiting up to `wait_seconds` while another process holds its lock: every
        interp process holds it only for a short read or write, so waiting beats failing a long run."""
        self.path = Path(path)
        if read_only and not self.path.exists():
            raise InterpError(f"catalog '{self.path}' does not exist; run `interp cache` first")
        deadline = time.monotonic() + wait_seconds
        while True:
            try:
                self.con = duckdb.connect(str(self.path), read_only=read_only)
                break
            except duckdb.IOException as error:
                message = str(error)
                if "not a valid DuckDB database" in message:
                    raise InterpError(f"'{self.path}' is not a DuckDB catalog") from None
                if "Could not set lock" not in message:
                    raise InterpError(f"cannot open catalog '{self.path}': {message}") from None
                if time.monotonic() >= deadline:
                    raise InterpError(
                        f"catalog '{self.path}' is held by another process for over {wait_seconds:.0f} s; "
                        "close it and rerun") from None
                time.sleep(LOCK_POLL_SECONDS)
        try:
            self._check_schema(read_only)
        except BaseException:
            self.con.close()
            raise

    def _check_schema(self, read_only: bool) -> None:
        tables = {row[0] for row in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "schema_info" not in tables:
            if tables:
                raise InterpError(
                    f"'{self.path}' is a DuckDB file but not an interp catalog (tables: {sorted(tables)})")
            if not read_only:
                self.con.execute(SCHEMA)
                self.con.execute("INSERT INTO schema_info VALUES ('schema_version', ?)", [str(SCHEMA_VERSION)])
            return
        row = self.con.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else None
        if version is None or version > SCHEMA_VERSION:
            raise InterpError(
                f"catalog '{self.path}' has schema version {version}, newer than this interp-agent "
                f"understands ({SCHEMA_VERSION}); upgrade interp-agent to read it"
            )
        if version < SCHEMA_VERSION and not read_only:
            # Versions add tables, which SCHEMA creates where missing; 5 also lets an ask question's
            # experiments stand without an explanation.
            with self.transaction() as con:
                con.execute(SCHEMA)
                if version == 4:
                    con.execute("ALTER TABLE experiments ALTER COLUMN explanation_id DROP NOT NULL")
                con.execute("UPDATE schema_info SET value = ? WHERE key = 'schema_version'", [str(SCHEMA_VERSION)])

    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[duckdb.DuckDBPyConnection]:
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield self.con
        except BaseException:
            self.con.execute("ROLLBACK")
            raise
        self.con.execute("COMMIT")

    def start_run(self, kind: str, config: dict, config_hash: str, corpus: dict, package_versions: dict) -> str:
        run_id = uuid.uuid4().hex[:12]
        self.con.execute(
            "INSERT INTO runs (run_id, kind, status, config, config_hash, corpus, package_versions) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?)",
            [run_id, kind, json.dumps(config), config_hash, json.dumps(corpus), json.dumps(package_versions)],
        )
        return run_id

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        self.con.execute(
            "UPDATE runs SET status = ?, error = ?, "
            "finished_at = CASE WHEN ? IN ('complete', 'failed') THEN current_timestamp END WHERE run_id = ?",
            [status, error, status, run_id],
        )

    def find_run(self, kind: str, config_hash: str) -> dict | None:
        """The latest run with this exact configuration, to resume or to skip."""
        return self._one(
            "SELECT * FROM runs WHERE kind = ? AND config_hash = ? ORDER BY started_at DESC LIMIT 1",
            [kind, config_hash],
        )

    def record_model(self, model_row: dict) -> None:
        insert_row(self.con, "models", model_row, on_conflict="ON CONFLICT DO NOTHING")

    def finish_feature_set(self, run_id: str, tokens: int, rows: FeatureSetRows) -> None:
        with self.transaction() as con:
            insert_row(con, "feature_sets", rows.feature_set)
            tables = (("features", rows.features), ("windows", rows.windows), ("examples", rows.examples))
            for table_name, table in tables:
                con.register("incoming", table)
                con.execute(f"INSERT INTO {table_name} ({', '.join(table.column_names)}) SELECT * FROM incoming")
                con.unregister("incoming")
            con.execute("UPDATE runs SET model_id = ?, tokens = ? WHERE run_id = ?",
                        [rows.feature_set["model_id"], tokens, run_id])
            self.set_run_status(run_id, "complete")

    def _one(self, sql: str, params: list) -> dict | None:
        # fetchall, not fetchone: DuckDB 2 refuses relation queries on a connection with an unfinished result.
        cursor = self.con.execute(sql, params)
        rows = cursor.fetchall()
        if not rows:
            return None
        return dict(zip([d[0] for d in cursor.description], rows[0], strict=True))

    def _all(self, sql: str, params: list | None = None) -> list[dict]:
        cursor = self.con.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def feature_sets(self) -> list[dict]:
        return self._all(
            "SELECT f.feature_set_id, m.name AS model, f.hook, f.kind, f.n_features, f.tokens, f.n_windows, "
            "f.created_at, f.run_id FROM feature_sets f JOIN models m USING (model_id) ORDER BY f.created_at"
        )

    def feature_set(self, ref: str) -> dict:
        """A feature set by id, id prefix, or hook name when that is unambiguous."""
        matches = self._all(
            "SELECT f.*, m.name AS model FROM feature_sets f JOIN models m USING (model_id) "
            "WHERE f.feature_set_id = ? OR starts_with(f.feature_set_id, ?) OR f.hook = ?",
            [ref, ref, ref],
        )
        exact = [m for m in matches if m["feature_set_id"] == ref]
        if exact:
            return exact[0]
        if len(matches) == 1:
            return matches[0]
        known = ", ".join(row["feature_set_id"] for row in self.feature_sets()) or "none yet; run `interp cache`"
        if not matches:
            raise InterpError(f"no feature set '{ref}' in catalog '{self.path}'; known: {known}")
        candidates = ", ".join(m["feature_set_id"] for m in matches)
        raise InterpError(f"feature set '{ref}' is ambiguous; use one of: {candidates}")

    def feature(self, feature_set_id: str, feature: int) -> dict:
        row = self._one("SELECT * FROM features WHERE feature_set_id = ? AND feature = ?", [feature_set_id, feature])
        if row is None:
            count = self._one("SELECT count(*) AS n FROM features WHERE feature_set_id = ?", [feature_set_id])["n"]
            raise InterpError(f"feature {feature} is not in feature set '{feature_set_id}' (features 0..{count - 1})")
        return row

    def top_features(self, feature_set_id: str, order_by: str, limit: int) -> list[dict]:
        if order_by not in ("max_act", "density", "mean_act"):
            raise InterpError(f"cannot sort features by '{order_by}'; expected max_act, density or mean_act")
        return self._all(
            f"SELECT feature, max_act, mean_act, density, window_density FROM features "
            f"WHERE feature_set_id = ? ORDER BY {order_by} DESC NULLS LAST, feature LIMIT ?",
            [feature_set_id, limit],
        )

    def examples(self, feature_set_id: str, feature: int, bucket: str | None = None,
                 split: str | None = None) -> list[dict]:
        """Examples with their window's tokens, ordered by bucket and rank."""
        return self._all(
            "SELECT e.bucket, e.rank, e.quantile, e.split, e.window_id, e.max_act, e.acts, w.tokens, w.token_ids "
            "FROM examples e JOIN windows w USING (feature_set_id, window_id) "
            "WHERE e.feature_set_id = ? AND e.feature = ? "
            "AND (? IS NULL OR e.bucket = ?) AND (? IS NULL OR e.split = ?) "
            "ORDER BY e.bucket, e.rank",
            [feature_set_id, feature, bucket, bucket, split, split],
        )

    def record_sae_eval(self, row: dict) -> None:
        insert_row(self.con, "sae_evals", row)

    def feature_set_of_run(self, run_id: str) -> str:
        return self._one("SELECT feature_set_id FROM feature_sets WHERE run_id = ?", [run_id])["feature_set_id"]

    def run(self, run_id: str) -> dict | None:
        return self._one("SELECT * FROM runs WHERE run_id = ?", [run_id])

    def model(self, model_id: str) -> dict:
        return self._one("SELECT * FROM models WHERE model_id = ?", [model_id])

    def live_features(self, feature_set_id: str) -> list[int]:
        """Features that fired at least once on the cached corpus, in index order."""
        rows = self.con.execute(
            "SELECT feature FROM features WHERE feature_set_id = ? AND max_act > 0 ORDER BY feature",
            [feature_set_id]).fetchall()
        return [row[0] for row in rows]

    def random_windows(self, feature_set_id: str) -> list[tuple[list[int], list[str]]]:
        """(token ids, tokens) of the windows sampled uniformly as negatives: an unbiased corpus sample."""
        rows = self.con.execute(
            "SELECT token_ids, tokens FROM windows WHERE feature_set_id = ? AND window_id IN "
            "(SELECT DISTINCT window_id FROM examples WHERE feature_set_id = ? AND bucket = 'random')",
            [feature_set_id, feature_set_id]).fetchall()
        return [(row[0], row[1]) for row in rows]

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

    def record_label(self, explanation: dict | None, scores: list[dict]) -> None:
        """A feature's new explanation (if any) and its scores, all or nothing."""
        with self.transaction() as con:
            self._insert_label(con, explanation, scores)

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

    def record_investigation(self, run_id: str, explanation: dict, scores: list[dict], experiments: list[dict]) -> None:
        """An investigation's explanation, scores and experiment log, and its run's end, all or nothing."""
        with self.transaction() as con:
            self._insert_label(con, explanation, scores)
            self._finish_experiments(con, run_id, experiments, explanation["status"] == "ok", explanation["error"])

    def record_answer(self, run_id: str, experiments: list[dict], error: str | None = None) -> None:
        """An `interp ask` question's experiment log (its answer the last LLM step) and its run's end."""
        with self.transaction() as con:
            self._finish_experiments(con, run_id, experiments, error is None, error)

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

    def explanation_count(self, feature_set_id: str) -> int:
        if not self.has_labels():
            return 0
        return self._one("SELECT count(*) AS n FROM explanations WHERE feature_set_id = ? AND status = 'ok'",
                         [feature_set_id])["n"]

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

    def has_labels(self) -> bool:
        """False for a catalog written before labeling existed (schema 2) and opened read-only, so never
        upgraded: it has no explanations table yet."""
        return bool(self._one(
            "SELECT count(*) AS n FROM information_schema.tables WHERE table_name = 'explanations'", [])["n"])

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
