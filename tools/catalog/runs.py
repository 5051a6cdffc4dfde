"""The runs table and the one lifecycle every run follows: started (or resumed), then complete, interrupted,
failed, or stale when its process died without saying.

A live run holds an advisory lock on `<catalog>.runs/<run_id>.lock` for as long as it runs; the operating
system drops the lock when the process ends, however it ends. So when a run starts, any run still marked
running whose lock is free belonged to a killed process and is marked stale.
"""

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

from tools.catalog.connection import Connection
from tools.catalog.turns import flock_held, runs_folder
from tools.errors import InterpError, Interrupted
from tools.interrupts import StopRequested

INTERRUPTIONS = (KeyboardInterrupt, Interrupted, StopRequested)
"""How a user stops a run (Ctrl-C, at once or at a batch boundary): the run is interrupted, not failed."""
RESUMABLE = ("running", "interrupted", "failed", "stale")


def new_run_id() -> str:
    return uuid.uuid4().hex[:12]


def lock_path(catalog_path: Path, run_id: str) -> Path:
    return runs_folder(catalog_path) / f"{run_id}.lock"


def already_running(kind: str, catalog_path: Path, run_id: str) -> InterpError:
    pid = lock_owner(catalog_path, run_id)
    return InterpError(f"the same {kind} run is already running on '{catalog_path}' (run {run_id}"
                       f"{f', process {pid}' if pid else ''}); wait for it to finish, or stop it and rerun")


def hold_lock(catalog_path: Path, run_id: str, kind: str) -> IO[bytes]:
    """Takes the run's lock, held until the returned file is closed (or the process ends)."""
    path = lock_path(catalog_path, run_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle = open(path, "ab")
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        handle.close()
        raise already_running(kind, catalog_path, run_id) from None
    handle.truncate(0)
    handle.write(str(os.getpid()).encode())
    handle.flush()
    return handle


def release_lock(catalog_path: Path, run_id: str, handle: IO[bytes]) -> None:
    lock_path(catalog_path, run_id).unlink(missing_ok=True)
    handle.close()


def lock_is_held(catalog_path: Path, run_id: str) -> bool:
    """Whether a live process holds the run's lock (this one included)."""
    return bool(flock_held(lock_path(catalog_path, run_id)))


def lock_owner(catalog_path: Path, run_id: str) -> str:
    """The process id a live run wrote into its lock file ('' when unreadable)."""
    try:
        return lock_path(catalog_path, run_id).read_text().strip()
    except OSError:
        return ""


class RunTables(Connection):
    def start_run(self, run_id: str, kind: str, config: dict, config_hash: str, corpus: dict | None,
                  package_versions: dict) -> None:
        self.con.execute(
            "INSERT INTO runs (run_id, kind, status, config, config_hash, corpus, package_versions) "
            "VALUES (?, ?, 'running', ?, ?, ?, ?)",
            [run_id, kind, json.dumps(config), config_hash, json.dumps(corpus), json.dumps(package_versions)],
        )

    def set_run_status(self, run_id: str, status: str, error: str | None = None) -> None:
        self.con.execute(
            "UPDATE runs SET status = ?, error = ?, "
            "finished_at = CASE WHEN ? IN ('complete', 'failed') THEN current_timestamp END WHERE run_id = ?",
            [status, error, status, run_id],
        )

    def find_run(self, kind: str, config_hash: str) -> dict | None:
        """The run with this exact configuration to skip (a complete one) or else to resume (the latest): a
        failed rerun never hides a finished run."""
        return self._one(
            "SELECT * FROM runs WHERE kind = ? AND config_hash = ? "
            "ORDER BY status = 'complete' DESC, started_at DESC LIMIT 1",
            [kind, config_hash],
        )

    def run_row(self, run_id: str) -> dict | None:
        return self._one("SELECT * FROM runs WHERE run_id = ?", [run_id])

    def mark_stale_runs(self) -> list[str]:
        """Runs marked running whose process is gone (their lock is free) become stale; returns their ids."""
        running = [row[0] for row in self.con.execute("SELECT run_id FROM runs WHERE status = 'running'").fetchall()]
        stale = [run_id for run_id in running if not lock_is_held(self.path, run_id)]
        for run_id in stale:
            self.set_run_status(run_id, "stale", "its process ended without finishing the run")
        return stale

    def refuse_a_second_writer(self, kind: str, config_hash: str, run_id: str) -> None:
        """One writer per (kind, run key): two identical runs at once would do every piece of work twice.
        `run_id` is the run this process holds the lock of (and may be resuming)."""
        row = self._one("SELECT run_id FROM runs WHERE kind = ? AND config_hash = ? AND status = 'running' "
                        "AND run_id <> ?", [kind, config_hash, run_id])
        if row is not None:
            raise already_running(kind, self.path, row["run_id"])

    @classmethod
    @contextmanager
    def run(cls, catalog_path: Path | str, kind: str, config: dict, config_hash: str = "",
            corpus: dict | None = None, package_versions: dict | None = None,
            resume: str | None = None) -> Iterator[str]:
        """A run's whole life: yields its id, and ends it as complete (unless the work already ended it in
        its last transaction), interrupted (Ctrl-C) or failed (anything else, with the error). The catalog
        is open only to start and to end the run, so other processes can read in between."""
        catalog_path = Path(catalog_path)
        run_id = resume or new_run_id()
        # The lock is held before the run is written as running, so no other process starting a run in between
        # can take this one for a dead process's.
        lock = hold_lock(catalog_path, run_id, kind)
        try:
            with cls(catalog_path) as catalog:
                catalog.mark_stale_runs()
                if config_hash:
                    catalog.refuse_a_second_writer(kind, config_hash, run_id)
                if resume:
                    catalog.set_run_status(resume, "running")
                else:
                    catalog.start_run(run_id, kind, config, config_hash or uuid.uuid4().hex[:16], corpus,
                                      package_versions or {})
        except BaseException:
            release_lock(catalog_path, run_id, lock)
            raise
        try:
            yield run_id
        except INTERRUPTIONS:
            with cls(catalog_path) as catalog:
                catalog.set_run_status(run_id, "interrupted")
            raise
        except BaseException as error:
            with cls(catalog_path) as catalog:
                catalog.set_run_status(run_id, "failed", f"{type(error).__name__}: {error}")
            raise
        else:
            with cls(catalog_path) as catalog:
                catalog.con.execute("UPDATE runs SET status = 'complete', finished_at = current_timestamp "
                                    "WHERE run_id = ? AND status = 'running'", [run_id])
        finally:
            release_lock(catalog_path, run_id, lock)
