"""Openers of one catalog take turns (tools/catalog/turns.py): whoever waits gets the file at the holder's next
turn, however fast the holder gives it up and takes it back. Counted in turns, never in seconds, so no machine
is too slow or too fast for these tests."""

import fcntl
import multiprocessing
from pathlib import Path

import pytest

from tools.catalog import Catalog
from tools.catalog.turns import Turns, turns_folder

SPAWN = multiprocessing.get_context("spawn")
MOST_TURNS_WAITED = 1
"""Counted from the moment the waiter's ticket exists: a holder that looked for tickets just before may still
begin one more turn. (Counted from before the waiter first tried, the turns the holder begins while the
waiter is still finding the file taken and taking its ticket depend on the two processes' speeds.)"""

def write_in_turns(path: Path, turns, started, stop) -> None:
    """The label writer's pattern at its most starving: open, write, close, and open again at once."""
    while not stop.is_set():
        with Catalog(path) as catalog:
            turns.value += 1
            started.set()
            catalog.con.execute("UPDATE schema_info SET value = value")


def read_in_turns(path: Path, turns, started, stop) -> None:
    while not stop.is_set():
        with Catalog(path, read_only=True) as catalog:
            turns.value += 1
            started.set()
            catalog.con.execute("SELECT count(*) FROM runs").fetchall()


def start(target, path: Path):
    turns, started, stop = SPAWN.Value("i", 0, lock=False), SPAWN.Event(), SPAWN.Event()
    process = SPAWN.Process(target=target, args=(path, turns, started, stop), daemon=True)
    process.start()
    assert started.wait(120), "the other process never opened the catalog"
    return process, turns, stop


@pytest.fixture
def catalog(tmp_path) -> Path:
    path = tmp_path / "c.duckdb"
    Catalog(path).close()
    return path


def turns_waited(monkeypatch, counters: list, open_catalog) -> list[int]:
    """Opens the catalog with `open_catalog()`; returns how many turns each other process began between this
    opener taking its ticket and getting in (none when it got in without one)."""
    from tools.catalog import turns as turns_module

    at_ticket: list[list[int]] = []
    take_ticket = turns_module.Turns.take_ticket

    def counted(self) -> None:
        had = self.ticket
        take_ticket(self)
        if had is None and self.ticket is not None:
            at_ticket.append([counter.value for counter in counters])

    monkeypatch.setattr(turns_module.Turns, "take_ticket", counted)
    with open_catalog() as opened:
        after = [counter.value for counter in counters]
        opened.con.execute("SELECT count(*) FROM runs").fetchall()
    monkeypatch.undo()
    return [0] * len(counters) if not at_ticket else [a - b for a, b in zip(after, at_ticket[0], strict=True)]


def test_a_waiting_reader_gets_the_catalog_at_a_busy_writers_next_turn(catalog, monkeypatch):
    """Before turns, a reader polling every 0.25 s let 20-40 such writer turns pass (and a whole label run in CI)."""
    writer, turns, stop = start(write_in_turns, catalog)
    try:
        waited = [turns_waited(monkeypatch, [turns], lambda: Catalog(catalog, read_only=True)) for _ in range(10)]
    finally:
        stop.set()
        writer.join(60)
    assert max(max(w) for w in waited) <= MOST_TURNS_WAITED, \
        f"the reader waited {waited} writer turns (at most {MOST_TURNS_WAITED})"
    assert not list(turns_folder(catalog).glob("*.ticket")), "a ticket was left behind"


def test_a_writer_is_not_kept_out_by_readers_that_always_overlap(catalog, monkeypatch):
    readers = [start(read_in_turns, catalog) for _ in range(2)]
    try:
        waited = [turns_waited(monkeypatch, [turns for _, turns, _ in readers], lambda: Catalog(catalog))
                  for _ in range(3)]
    finally:
        for process, _, stop in readers:
            stop.set()
            process.join(60)
    assert max(max(w) for w in waited) <= MOST_TURNS_WAITED, f"the writer waited {waited} turns of each reader"


def test_a_ticket_whose_owner_died_is_removed_and_holds_nobody_back(catalog):
    folder = turns_folder(catalog)
    folder.mkdir(parents=True)
    dead = folder / "read-0123.ticket"
    dead.touch()  # nobody holds its lock
    live = folder / "write-4567.ticket"
    with open(live, "wb") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        assert Turns(catalog, "write").others_waiting()
    assert not dead.exists() and live.exists()
    assert not Turns(catalog, "write").others_waiting()
    assert not live.exists()


def test_the_label_writer_lets_the_catalog_go_when_another_process_waits(catalog, monkeypatch):
    from agent.labeling import writer as writer_module

    monkeypatch.setattr(writer_module, "HOLD_SECONDS", 1e9)  # only a waiter can make it let go
    monkeypatch.setattr(writer_module, "SHORTEST_TURN_SECONDS", 0.0)
    writer = writer_module.LabelWriter(catalog, embedder=None, totals=writer_module.Totals())  # type: ignore[arg-type]
    writer.catalog()
    turns_folder(catalog).mkdir(parents=True, exist_ok=True)
    writer.release_if_held()
    assert writer._catalog is not None, "let go with nobody waiting"
    waiter = Turns(catalog, "read")
    waiter.take_ticket()
    try:
        writer.release_if_held()
        assert writer._catalog is None
    finally:
        waiter.close()


def test_an_open_nested_in_the_same_thread_takes_no_second_turn(catalog):
    turns_folder(catalog).mkdir(parents=True)
    waiting_writer = Turns(catalog, "write")
    try:
        with Catalog(catalog, read_only=True) as outer:
            assert outer.turns.turn is not None
            waiting_writer.take_ticket()  # a reader lets it go first, so a nested one would wait for itself
            with Catalog(catalog, read_only=True) as inner:
                assert inner.feature_sets() == [] and inner.turns.turn is None
    finally:
        waiting_writer.close()
