"""One run lifecycle for every kind of run: complete, interrupted on Ctrl-C, failed with the error, and
stale when its process was killed while it ran."""

import signal
import subprocess
import sys

import pytest

from tools.catalog import Catalog
from tools.errors import Interrupted
from tools.interrupts import StopRequested

START_AND_WAIT = """
import sys, time
from tools.catalog import Catalog
with Catalog.run(sys.argv[1], "label", {}) as run_id:
    print(run_id, flush=True)
    time.sleep(60)
"""


def status(path, run_id: str) -> tuple[str, str | None]:
    with Catalog(path, read_only=True) as catalog:
        row = catalog.run_row(run_id)
    return row["status"], row["error"]


def test_a_run_that_returns_is_complete(tmp_path):
    path = tmp_path / "c.duckdb"
    with Catalog.run(path, "audit", {"a": 1}) as run_id:
        assert status(path, run_id) == ("running", None)
    assert status(path, run_id) == ("complete", None)
    assert not list((tmp_path / "c.duckdb.runs").glob("*.lock"))


@pytest.mark.parametrize("stop", [KeyboardInterrupt(), Interrupted("stopped"), StopRequested()])
def test_ctrl_c_is_interrupted_for_every_run(tmp_path, stop):
    path = tmp_path / "c.duckdb"
    with pytest.raises(type(stop)), Catalog.run(path, "investigate", {}) as run_id:
        raise stop
    assert status(path, run_id) == ("interrupted", None)


def test_an_error_fails_the_run_with_its_message(tmp_path):
    path = tmp_path / "c.duckdb"
    with pytest.raises(ValueError), Catalog.run(path, "audit", {}) as run_id:
        raise ValueError("bad concept")
    assert status(path, run_id) == ("failed", "ValueError: bad concept")


def test_a_run_that_ended_itself_keeps_its_status(tmp_path):
    path = tmp_path / "c.duckdb"
    with Catalog.run(path, "investigate", {}) as run_id, Catalog(path) as catalog:
        catalog.record_answer(run_id, [], error="the LLM gave nothing usable")
    assert status(path, run_id) == ("failed", "the LLM gave nothing usable")


def test_a_killed_run_is_marked_stale_when_the_next_run_starts(tmp_path):
    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    process = subprocess.Popen([sys.executable, "-c", START_AND_WAIT, str(path)], stdout=subprocess.PIPE, text=True)
    killed = process.stdout.readline().strip()
    with Catalog.run(path, "label", {}) as alive:
        # A live run's lock is held: starting another run leaves it running.
        with Catalog.run(path, "label", {}):
            assert status(path, alive) == ("running", None)
        assert status(path, killed) == ("running", None)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
    with Catalog.run(path, "label", {}):
        assert status(path, killed) == ("stale", "its process ended without finishing the run")
    assert status(path, alive) == ("complete", None)
