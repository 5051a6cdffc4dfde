"""One run lifecycle for every kind of run: complete, interrupted on Ctrl-C, failed with the error, and
stale when its process was killed while it ran."""

import signal
import subprocess
import sys

import pytest

from tools.catalog import Catalog
from tools.errors import InterpError, Interrupted
from tools.interrupts import StopRequested

START_AND_WAIT = """
import sys
from tools.catalog import Catalog
with Catalog.run(sys.argv[1], "label", {}) as run_id:
    print(run_id, flush=True)
    sys.stdin.readline()  # until the test kills it: never ends on its own
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
    process = subprocess.Popen([sys.executable, "-c", START_AND_WAIT, str(path)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
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


HOLD_KEYED_RUN = """
import sys
from tools.catalog import Catalog
with Catalog.run(sys.argv[1], "label", {}, "the-key") as run_id:
    print(run_id, flush=True)
    sys.stdin.readline()  # until the test kills it: never ends on its own
"""


def test_a_second_writer_of_the_same_run_is_refused_and_a_finished_run_is_never_hidden(tmp_path):
    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    holder = subprocess.Popen([sys.executable, "-c", HOLD_KEYED_RUN, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    running = holder.stdout.readline().strip()
    try:
        with pytest.raises(InterpError, match=f"the same label run is already running .*run {running}, process "
                                              f"{holder.pid}"), Catalog.run(path, "label", {}, "the-key"):
            pass
        with Catalog.run(path, "label", {}, "another-key"):  # other work goes ahead
            pass
    finally:
        holder.kill()
        holder.wait(10)
    with Catalog.run(path, "label", {}, "the-key") as finished:
        pass
    with pytest.raises(ValueError), Catalog.run(path, "label", {}, "the-key"):
        raise ValueError("a later attempt failed")
    with Catalog(path, read_only=True) as catalog:
        assert catalog.find_run("label", "the-key")["run_id"] == finished


def test_each_key_keeps_one_explanation(tmp_path):
    row = {"explanation_id": "a", "feature_set_id": "s", "feature": 3, "explainer": "oneshot", "llm": "l",
           "prompt_hash": "p", "status": "ok", "text": "t", "error": None, "prompt_tokens": 1,
           "completion_tokens": 1, "embedding": None, "embedder": None, "run_id": "r"}
    with Catalog(tmp_path / "c.duckdb") as catalog:
        assert catalog.record_label(row, [])
        assert not catalog.record_label(row | {"explanation_id": "b", "text": "other"}, [])
        assert catalog.record_label(row | {"explanation_id": "c", "llm": "another"}, [])
        assert catalog.con.execute("SELECT explanation_id FROM explanations ORDER BY 1").fetchall() == [("a",), ("c",)]
