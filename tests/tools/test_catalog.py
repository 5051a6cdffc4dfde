"""The catalog waits for another process's lock instead of failing a long run at its last step."""

import subprocess
import sys
import time

import pytest

from tools.catalog import Catalog
from tools.errors import InterpError

HOLD = "import duckdb, sys; c = duckdb.connect(sys.argv[1], read_only=True); print('held', flush=True); " \
       "sys.stdin.readline()"
"""Another process (not ours: it takes no turns) holding the catalog until told to let go, or killed."""


def hold_lock(path) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_writer_waits_for_a_reader_to_finish(tmp_path):
    import threading

    from tools.catalog.turns import turns_folder

    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    holder = hold_lock(path)
    opened: list = []
    writer = threading.Thread(target=lambda: opened.append(Catalog(path)))
    writer.start()
    # Bounded by the writer's own 60 s wait: it then fails, and its thread ends.
    while not list(turns_folder(path).glob("write-*.ticket")):  # the writer found it taken and waits
        assert writer.is_alive() and not opened, "the writer did not wait for the reader"
        time.sleep(0.01)
    holder.communicate("\n", timeout=60)
    writer.join()
    (catalog,) = opened
    with catalog:
        assert catalog.feature_sets() == []


def test_writer_gives_up_with_a_clear_error(tmp_path):
    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    holder = hold_lock(path)
    with pytest.raises(InterpError, match="is held by another process for over 1 s; close it and rerun"):
        Catalog(path, wait_seconds=1)
    holder.kill()
    holder.wait()


def test_an_older_catalog_is_upgraded_by_a_writer_and_read_as_is(tmp_path):
    import duckdb

    from tools.catalog import SCHEMA_VERSION

    path = tmp_path / "old.duckdb"
    Catalog(path).close()
    with duckdb.connect(str(path)) as con:  # what version 1 wrote: no sae_evals table
        con.execute("DROP TABLE sae_evals")
        con.execute("UPDATE schema_info SET value = '1' WHERE key = 'schema_version'")
    with Catalog(path, read_only=True) as catalog:
        assert catalog.feature_sets() == []
    with Catalog(path) as catalog:
        assert catalog.con.execute("SELECT value FROM schema_info").fetchone() == (str(SCHEMA_VERSION),)
        assert catalog.con.execute("SELECT count(*) FROM sae_evals").fetchone() == (0,)


def test_a_version_4_catalog_lets_ask_experiments_stand_without_an_explanation(tmp_path):
    import duckdb

    path = tmp_path / "v4.duckdb"
    Catalog(path).close()
    with duckdb.connect(str(path)) as con:  # what version 4 wrote: experiments keyed by an explanation
        con.execute("DROP TABLE experiments")
        con.execute("CREATE TABLE experiments (explanation_id VARCHAR NOT NULL, step INTEGER NOT NULL, "
                    "tool VARCHAR NOT NULL, arguments JSON NOT NULL, ok BOOLEAN NOT NULL, result VARCHAR NOT NULL, "
                    "seconds DOUBLE NOT NULL, run_id VARCHAR NOT NULL)")
        con.execute("UPDATE schema_info SET value = '4' WHERE key = 'schema_version'")
    with Catalog(path) as catalog:
        catalog.con.execute("INSERT INTO experiments VALUES (NULL, 0, 'ablate', '{}', true, 'r', 0.1, 'run')")
        assert catalog.con.execute("SELECT explanation_id, tool FROM experiments").fetchall() == [(None, "ablate")]
