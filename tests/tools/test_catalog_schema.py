"""A catalog file is untrusted: it holds base tables with exactly the columns its version promises, its
queries never read local files, and a catalog of every earlier version takes every current write."""

import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pyarrow as pa
import pytest

from tools.catalog import SCHEMA_VERSION, Catalog, FeatureSetRows
from tools.catalog.schema import columns_of, expected_columns
from tools.errors import InterpError

SCHEMAS = Path(__file__).with_name("schemas")
OLD_VERSIONS = sorted(int(path.stem[1:]) for path in SCHEMAS.glob("v*.sql"))


def old_catalog(path: Path, version: int) -> Path:
    with duckdb.connect(str(path)) as con:
        con.execute((SCHEMAS / f"v{version}.sql").read_text())
    return path


def every_current_write(catalog: Catalog) -> None:
    """One row through each write the package makes, with every column the current schema has."""
    run_id = "run-1"
    catalog.start_run(run_id, "cache", {}, "key", {}, {})
    catalog.record_model({"model_id": "m", "name": "tiny", "path": "/m", "architecture": "A", "n_layers": 1,
                          "d_model": 2, "config": "{}", "run_id": run_id})
    features = pa.table({"feature_set_id": ["s"], "feature": [0], "max_act": pa.array([1.0], pa.float32()),
                         "min_act": pa.array([0.0], pa.float32()), "mean_act": [0.5], "density": [0.1],
                         "window_density": [0.2], "n_tokens": [3], "hist_max": [1.0], "hist_counts": [[1, 2]],
                         "quantile_edges": [[0.5]], "run_id": [run_id]})
    windows = pa.table({"feature_set_id": ["s"], "window_id": [0], "token_ids": [[1, 2]], "tokens": [["a", "b"]],
                        "run_id": [run_id]})
    examples = pa.table({"feature_set_id": ["s"], "feature": [0], "bucket": ["top"], "rank": [0],
                         "quantile": pa.array([None], pa.int32()), "split": ["explain"], "window_id": [0],
                         "max_act": pa.array([1.0], pa.float32()), "acts": [[0.0, 1.0]], "run_id": [run_id]})
    catalog.finish_feature_set(run_id, 2, FeatureSetRows(
        {"feature_set_id": "s", "model_id": "m", "hook": "mlp.0", "hf_module": "m", "kind": "neuron", "n_features": 1,
         "window_length": 2, "n_windows": 1, "tokens": 2, "source_path": None, "source_sha256": None,
         "run_id": run_id}, features, windows, examples))
    catalog.record_sae_eval({"run_id": run_id, "model_id": "m", "hook": "h", "sae_path": "p", "sae_sha256": "x",
                             "tokens": 1, "fvu": 0.1, "baseline": "linear", "dead_tokens": 100})
    explanation = {"explanation_id": "e", "feature_set_id": "s", "feature": 0, "explainer": "oneshot", "llm": "l",
                   "prompt_hash": "p", "status": "ok", "text": "t", "error": None, "prompt_tokens": 1,
                   "completion_tokens": 1, "embedding": [0.1, 0.2], "embedder": "emb", "run_id": run_id}
    score = {"explanation_id": "e", "scorer": "detection", "metric": "auroc", "llm": "l", "prompt_hash": "p",
             "status": "ok", "value": 0.5, "n": 2, "ci_low": 0.1, "ci_high": 0.9, "details": "{}", "error": None,
             "prompt_tokens": 1, "completion_tokens": 0, "run_id": run_id}
    catalog.record_label(explanation, [score])
    catalog.record_investigation(run_id, explanation | {"explanation_id": "f"}, [], [
        {"explanation_id": "f", "step": 0, "tool": "top_examples", "arguments": "{}", "ok": True, "result": "r",
         "seconds": 0.1, "run_id": run_id}])
    catalog.record_answer(run_id, [{"explanation_id": None, "step": 0, "tool": "llm:answer", "arguments": "{}",
                                    "ok": True, "result": "r", "seconds": 0.1, "run_id": run_id}])
    catalog.record_audit(
        {"run_id": run_id, "feature_set_id": "s", "concept": "c", "concept_key": "k", "description": "d",
         "positive": "[]", "negative": "[]", "texts_by": "file", "probe_auroc": 0.5, "n_texts": 2,
         "verdict": "not found"},
        [{"run_id": run_id, "feature_set_id": "s", "concept": "c", "rank": 1, "feature": 0, "found_by": "[]",
          "explanation": "t", "explanation_scores": "{}", "activation_auroc": 0.5, "verdict": "no evidence"}])
    catalog.record_eval(run_id, "planted", [{"subject": "x", "metric": "m", "value": 0.5, "n": 2, "details": "{}"}])
    catalog.start_run("run-2", "trace", {}, "key2", None, {})
    catalog.record_graph(
        {"graph_id": "g", "run_id": "run-2", "model_id": "m", "transcoders_path": "/t", "transcoders_sha256": "x",
         "prompt": "p", "token_ids": [1, 2], "tokens": ["a", "b"], "n_layers": 1, "targets": "[]", "settings": "{}",
         "active_features": 1, "n_features": 1, "replacement_score": 0.5, "completeness_score": 0.9, "check_n": 3,
         "check_r": 0.1, "check_ci_low": -0.5, "check_ci_high": 0.6, "perturb_r": 0.7, "perturb_ci_low": 0.4,
         "perturb_ci_high": 0.9, "seconds": 1.0},
        [{"node": 0, "kind": "feature", "layer": 0, "position": 1, "feature": 4, "value": 2.0, "influence": 0.1,
          "feature_set_id": "s", "check_predicted": 0.1, "check_measured": 0.2, "check_perturbed": 0.02}],
        [{"source": 0, "target": 1, "weight": 0.5}])


def test_the_schema_fixtures_cover_every_earlier_version():
    assert OLD_VERSIONS == list(range(1, SCHEMA_VERSION))


@pytest.mark.parametrize("version", OLD_VERSIONS)
def test_a_catalog_of_every_earlier_version_takes_every_current_write(tmp_path, version):
    path = old_catalog(tmp_path / "old.duckdb", version)
    with Catalog(path, read_only=True) as catalog:  # read as it is
        assert catalog.feature_sets() == []
    with Catalog(path) as catalog:
        assert columns_of(catalog.con) == expected_columns()
        every_current_write(catalog)
        assert catalog.con.execute("SELECT explanation_scores FROM audit_candidates").fetchall() == [("{}",)]
    with Catalog(path, read_only=True) as catalog:
        assert catalog.con.execute("SELECT value FROM schema_info").fetchone() == (str(SCHEMA_VERSION),)


def test_a_new_catalog_takes_every_write(tmp_path):
    with Catalog(tmp_path / "c.duckdb") as catalog:
        every_current_write(catalog)


def test_a_view_over_a_local_file_is_refused(tmp_path):
    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    with duckdb.connect(str(path)) as con:
        con.execute("DROP TABLE models")
        con.execute("CREATE VIEW models AS SELECT content AS model_id, content AS name FROM read_text('/etc/hostname')")
    for read_only in (True, False):
        with pytest.raises(InterpError, match="holds views \\(models\\), which interp-agent never writes"):
            Catalog(path, read_only=read_only)


def test_a_catalog_never_reads_local_files(tmp_path):
    with Catalog(tmp_path / "c.duckdb") as catalog, pytest.raises(duckdb.PermissionException):
        catalog.con.execute("SELECT * FROM read_text('/etc/hostname')")


def test_a_macro_is_refused(tmp_path):
    """A catalog made elsewhere."""
    from tools.catalog.schema import create

    path = tmp_path / "c.duckdb"
    with duckdb.connect(str(path)) as con:
        create(con)
        con.execute("CREATE MACRO starts_with(a, b) AS true")
    with pytest.raises(InterpError, match="defines functions \\(starts_with\\)"):
        Catalog(path, read_only=True)


@pytest.mark.parametrize("change, message", [
    ("ALTER TABLE runs ADD COLUMN secret VARCHAR", "table 'runs' has columns {'secret': 'VARCHAR'}"),
    ("ALTER TABLE runs DROP COLUMN error", "table 'runs' lacks columns \\['error'\\]"),
    ("CREATE TABLE extra (a INTEGER)", "has a table 'extra' that schema version"),
    ("DROP TABLE evals", "lacks tables \\['evals'\\]"),
])
def test_a_catalog_whose_schema_differs_from_its_version_is_refused(tmp_path, change, message):
    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    with duckdb.connect(str(path)) as con:
        con.execute(change)
    with pytest.raises(InterpError, match=message):
        Catalog(path, read_only=True)


def test_a_catalog_is_checked_again_once_anyone_else_has_written_it(tmp_path, monkeypatch):
    """A label run reopens its catalog every second and skips the check while the file is as it left it; a
    write by anyone else in between (here, a macro another program added) means a check, and a refusal."""
    from tools.catalog.connection import Connection

    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    checks = []
    check = Connection._check_schema
    monkeypatch.setattr(Connection, "_check_schema", lambda self, read_only: checks.append(1) or check(self, read_only))
    with Catalog(path) as catalog:
        catalog.con.execute("INSERT INTO schema_info VALUES ('note', 'ours')")  # our own write keeps the skip
    Catalog(path, read_only=True).close()
    assert checks == []
    time.sleep(0.05)  # past the clock tick of our close: timestamps move in ticks (see CHECKED)
    with duckdb.connect(str(path)) as con:
        con.execute("CREATE MACRO starts_with(a, b) AS true")
    for _ in range(2):
        with pytest.raises(InterpError, match="defines functions \\(starts_with\\)"):
            Catalog(path)
    assert checks == [1, 1]


def test_stamping_an_open_catalog_keeps_other_processes_out(tmp_path):
    """DuckDB holds its lock with POSIX record locks, which closing any descriptor of the file in this process
    releases: a stamp that read the file once let a second process in while we wrote."""
    from tools.catalog.connection import file_stamp

    path = tmp_path / "c.duckdb"
    with Catalog(path) as catalog:
        file_stamp(path)
        catalog.con.execute("SELECT 1")
        other = subprocess.run([sys.executable, "-c", f"import duckdb; duckdb.connect({str(path)!r})"],
                               capture_output=True, text=True, timeout=120)
    assert other.returncode != 0 and "lock" in other.stderr
