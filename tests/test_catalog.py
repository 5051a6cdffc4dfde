"""The catalog waits for another process's lock instead of failing a long run at its last step."""

import subprocess
import sys
import time

import pytest

from tools.catalog import Catalog
from tools.errors import InterpError

HOLD = "import duckdb, sys, time; c = duckdb.connect(sys.argv[1], read_only=True); print('held', flush=True); " \
       "time.sleep(float(sys.argv[2]))"


def hold_lock(path, seconds: float) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    return holder


def test_writer_waits_for_a_reader_to_finish(tmp_path):
    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    holder = hold_lock(path, 1.5)
    start = time.monotonic()
    with Catalog(path) as catalog:
        assert catalog.feature_sets() == []
    assert time.monotonic() - start > 0.5
    holder.wait()


def test_writer_gives_up_with_a_clear_error(tmp_path):
    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    holder = hold_lock(path, 5)
    with pytest.raises(InterpError, match="is held by another process for over 1 s; close it and rerun"):
        Catalog(path, wait_seconds=1)
    holder.kill()
