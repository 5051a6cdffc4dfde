"""Taking turns on a catalog file, so that a process waiting for it gets it at the holder's next turn.

DuckDB lets one process write a file or many read it, never both, and one that finds it taken can only try
again later. Trying again on a timer starves: the label writer gives the file up every second and takes it
back at once, so a page polling every 0.25 s kept missing the gap (CI saw one wait almost a whole run).

So every opener of a catalog with a turns folder (`<catalog>.runs/turns/`, made when two processes first
meet on the file) also holds a mirror of DuckDB's lock while its connection is open: an flock on
`turns/catalog.lock`, shared to read and exclusive to write. Whether the file is free is then a
microsecond's question instead of a failed DuckDB open (~4 ms of CPU), which a waiter asks every
`POLL_SECONDS`. An opener that finds the file taken takes a ticket (a file in `turns/` that it keeps
flocked while it waits) and gives it back once it is in. Before it tries, a writer lets every waiting
ticket go first, and a reader lets waiting writers go first (readers share the file, but a stream of pages
could otherwise keep a writer out). A holder that works in turns (the label writer) ends its turn early
when a ticket is waiting (`others_waiting`). So a waiter gets the file once the holder's current turn ends,
whoever else keeps asking: the label writer's turns last 0.5 s when someone waits (agent/labeling/writer.py),
other writers hold it for one write.

Tickets are flocked, so one left by a killed process is seen to be free and removed by whoever meets it.
flock locks are apart from DuckDB's POSIX record locks, and nothing here opens the catalog file itself
(closing any descriptor of it would drop DuckDB's lock). Everything here is advisory: a process that does
not take turns (an older interp-agent, the DuckDB shell) is met as before, by DuckDB's own lock, and any
error on the turns folder falls back to that.
"""

import fcntl
import os
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import IO

POLL_SECONDS = 0.005
"""How often a waiter asks whether the file is free, or whether the tickets it lets go first are gone."""
YIELD_SECONDS = 10.0
"""The longest an opener lets waiting tickets go first: a ticket whose owner is stopped (not dead) must not
hold everyone back for good."""
READ, WRITE = "read", "write"

_held = threading.local()
"""The catalogs this thread holds a turn on: a nested open in the same thread takes no second turn (it would
wait for its own outer one), and DuckDB decides it as before."""


def runs_folder(catalog_path: Path) -> Path:
    """Where a catalog's runs keep their locks and resume checkpoints, and its openers take turns."""
    return catalog_path.with_name(catalog_path.name + ".runs")


def turns_folder(catalog_path: Path) -> Path:
    return runs_folder(catalog_path) / "turns"


def held_here() -> set[Path]:
    if not hasattr(_held, "paths"):
        _held.paths = set()
    paths: set[Path] = _held.paths
    return paths


class Turns:
    """One opener's part in the turn-taking on a catalog file: its turn while it holds one, its ticket while
    it waits."""

    def __init__(self, catalog_path: Path, kind: str):
        self.key, self.kind = catalog_path.resolve(), kind
        self.folder = turns_folder(catalog_path)
        self.turn: IO[bytes] | None = None
        self.ticket: tuple[Path, IO[bytes]] | None = None

    def active(self) -> bool:
        """Turns are taken on this file (someone met someone on it), and not already by this thread."""
        return self.folder.is_dir() and self.key not in held_here()

    def start(self) -> None:
        """The turns folder, from now on: called when the file was found taken."""
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError:  # a folder we cannot write: openers meet on DuckDB's lock alone
            pass

    def let_others_go_first(self) -> None:
        """Waits, at most `YIELD_SECONDS`, until no ticket this opener should let go first is waiting."""
        kinds = (READ, WRITE) if self.kind == WRITE else (WRITE,)
        deadline = time.monotonic() + YIELD_SECONDS
        while any(True for _ in self._waiting(kinds)) and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)

    def others_waiting(self) -> bool:
        """Whether anyone else holds a ticket: a holder working in turns ends its turn for them."""
        return any(True for _ in self._waiting((READ, WRITE)))

    def try_take(self) -> bool:
        """Takes this opener's turn if no other opener that takes turns holds the file (never waits)."""
        try:
            handle = open(self.folder / "catalog.lock", "ab")
        except OSError:
            return True  # the folder went away or cannot be written: DuckDB's own lock decides
        try:
            fcntl.flock(handle, (fcntl.LOCK_SH if self.kind == READ else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.close()
            return False
        self.turn = handle
        held_here().add(self.key)
        return True

    def end_turn(self) -> None:
        if self.turn is not None:
            held_here().discard(self.key)
            self.turn.close()
            self.turn = None

    def take_ticket(self) -> None:
        """Says this opener is waiting (once): the ticket is flocked before it is given its name, so whoever
        lists it finds it held."""
        if self.ticket is not None or not self.folder.is_dir():
            return
        name = f"{self.kind}-{uuid.uuid4().hex}"
        draft = self.folder / f".{name}.draft"
        try:
            handle = open(draft, "wb")
        except OSError:
            return
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            final = self.folder / f"{name}.ticket"
            os.rename(draft, final)
        except OSError:
            handle.close()
            draft.unlink(missing_ok=True)
            return
        self.ticket = (final, handle)

    def give_back_ticket(self) -> None:
        if self.ticket is not None:
            path, handle = self.ticket
            path.unlink(missing_ok=True)  # gone from the listing before its lock is let go
            handle.close()
            self.ticket = None

    def close(self) -> None:
        self.give_back_ticket()
        self.end_turn()

    def _waiting(self, kinds: tuple[str, ...]) -> Iterator[Path]:
        """Other openers' live tickets of these kinds; tickets whose owner died are removed on the way."""
        own = self.ticket[0].name if self.ticket is not None else None
        try:
            entries = list(os.scandir(self.folder))
        except OSError:
            return
        for entry in entries:
            kind, _, rest = entry.name.partition("-")
            if kind not in kinds or not rest.endswith(".ticket") or entry.name == own:
                continue
            if ticket_is_live(Path(entry.path)):
                yield Path(entry.path)


def ticket_is_live(path: Path) -> bool:
    """A ticket's owner still holds its lock; one that does not (it died) is removed."""
    held = flock_held(path)
    if held is False:
        path.unlink(missing_ok=True)
    return bool(held)


def flock_held(path: Path) -> bool | None:
    """Whether a live process holds an flock on the file (None: there is no such file). Probing with our own
    descriptor is safe: an flock belongs to the descriptor that took it, so closing ours drops only ours."""
    try:
        handle = open(path, "rb")
    except OSError:
        return None
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        return False
