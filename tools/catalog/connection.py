"""Opening a catalog file: the lock another process may hold, the schema check, transactions and queries.

One process writes at a time (DuckDB locks the file); callers open the catalog for a short write
and close it, so `interp features` can read between runs. Openers that meet on the file take turns
(tools/catalog/turns.py), so none waits for more than the holder's current turn.
"""

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Self

import duckdb
import pyarrow as pa

from tools.catalog.schema import SCHEMA_VERSION, check_columns, create, migrate, refuse_objects
from tools.catalog.turns import POLL_SECONDS, READ, WRITE, Turns
from tools.errors import InterpError

SAFE_CONFIG: dict[str, str | bool | int | float | list[str]] = {
    "enable_external_access": False, "autoload_known_extensions": False, "autoinstall_known_extensions": False}
"""A catalog may come from someone else: its queries never touch files, the network or extensions (our own
reads and writes only move Arrow tables in and out)."""
LOCK_WAIT_SECONDS = 60.0
FOREIGN_POLL_SECONDS = 0.05
"""How often to try DuckDB's lock again when its holder takes no turn (tools/catalog/turns.py): each failed
try costs ~4 ms of CPU."""
FileStamp = tuple[tuple[int, ...] | None, ...]
"""A catalog file and its write-ahead log as `stat` shows them (inode, size, modified and changed times)."""
CHECKED: dict[Path, FileStamp] = {}
"""Catalogs this process checked (at the current schema version), each as its last connection left it. The
label run reopens its catalog every second and the check is half of opening's ~60 ms of CPU; a file whose
stamp has moved since (anyone wrote it, another program included) is checked again. Timestamps move in
clock ticks of a few ms: a write by another program within the tick of our close that leaves the size as
it was goes unseen until the file next changes (the macro check this replaced never looked again)."""


def file_stamp(path: Path) -> FileStamp:
    """Never opens the file: DuckDB locks it with POSIX record locks, which closing any other descriptor of
    the file in this process would silently release (reading its header this way let a second process
    in and corrupt the catalog)."""
    stamps: list[tuple[int, ...] | None] = []
    for name in (path, path.with_name(path.name + ".wal")):
        try:
            found = os.stat(name)
        except OSError:  # not there (a WAL usually is not): never taken as unchanged for the file itself
            stamps.append(None)
            continue
        stamps.append((found.st_dev, found.st_ino, found.st_size, found.st_mtime_ns, found.st_ctime_ns))
    return tuple(stamps)


def insert_row(con: duckdb.DuckDBPyConnection, table: str, row: dict, on_conflict: str = "") -> None:
    """One row from a dict whose keys are column names (ours, never user input)."""
    placeholders = ", ".join(f"${name}" for name in row)
    con.execute(f"INSERT INTO {table} ({', '.join(row)}) VALUES ({placeholders}) {on_conflict}", row)


def insert_table(con: duckdb.DuckDBPyConnection, table_name: str, table: pa.Table) -> None:
    """An Arrow table's rows into a table with those columns (ours), in one statement."""
    con.register("incoming", table)
    try:
        con.execute(f"INSERT INTO {table_name} ({', '.join(table.column_names)}) SELECT * FROM incoming")
    finally:
        con.unregister("incoming")


def rows_table(rows: list[dict]) -> pa.Table:
    """Dict rows as an Arrow table with every key any row has (a missing key is NULL), each column's type
    inferred from its own values; from_pylist would take the first row's keys and drop the others."""
    names = list(dict.fromkeys(name for row in rows for name in row))
    return pa.table({name: pa.array([row.get(name) for row in rows]) for name in names})


def check_catalog_path(path: Path) -> None:
    """Fail before any work if the catalog could not be opened or created; never creates it."""
    if path.exists():
        if path.is_dir():
            raise InterpError(f"catalog path '{path}' is a directory, not a DuckDB file")
        with Connection(path, read_only=True):
            return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        raise InterpError(f"cannot create catalog '{path}': folder '{parent}' does not exist")
    if not os.access(parent, os.W_OK):
        raise InterpError(f"cannot create catalog '{path}': folder '{parent}' is not writable")


class Connection:
    """An open catalog file; the table families (tools.catalog.*) add their reads and writes to it."""

    def __init__(self, path: Path | str, read_only: bool = False, wait_seconds: float = LOCK_WAIT_SECONDS):
        """Opens the catalog, waiting up to `wait_seconds` while another process holds its lock: every
        interp process holds it only for a short read or write, so waiting beats failing a long run.
        The schema is checked unless this process checked the file and nobody has written it since."""
        self.path, self.read_only = Path(path), read_only
        self.current = False
        """Checked, and at the current schema version: its stamp at close goes in CHECKED."""
        if read_only and not self.path.exists():
            raise InterpError(f"catalog '{self.path}' does not exist; run `interp cache` first")
        self.turns = Turns(self.path, READ if read_only else WRITE)
        try:
            self.con = self._connect(wait_seconds)
        finally:
            self.turns.give_back_ticket()
        try:
            self.key = self.path.resolve()
            if CHECKED.get(self.key) == file_stamp(self.path):  # stable now: our connection holds the lock
                self.current = True
            else:
                CHECKED.pop(self.key, None)
                self._check_schema(read_only)
        except BaseException:
            self.con.close()
            self.turns.end_turn()
            raise

    def _connect(self, wait_seconds: float) -> duckdb.DuckDBPyConnection:
        """DuckDB's connection, in this opener's turn (tools/catalog/turns.py), waiting up to `wait_seconds` for
        it. Returns holding the turn (when turns are taken on the file): `close` ends it."""
        deadline = time.monotonic() + wait_seconds
        if self.turns.active():
            self.turns.let_others_go_first()
        while True:
            active = self.turns.active()
            if not active or self.turns.try_take():
                try:
                    return duckdb.connect(str(self.path), read_only=self.read_only, config=SAFE_CONFIG)
                except duckdb.IOException as error:
                    self.turns.end_turn()
                    message = str(error)
                    if "not a valid DuckDB database" in message:
                        raise InterpError(f"'{self.path}' is not a DuckDB catalog") from None
                    if "Could not set lock" not in message:
                        raise InterpError(f"cannot open catalog '{self.path}': {message}") from None
                    # Held by a process that did not take a turn: one that opened before turns were taken on
                    # the file (they are from now on), or one that never takes them.
                    self.turns.start()
                    pause = FOREIGN_POLL_SECONDS
                except BaseException:
                    self.turns.end_turn()
                    raise
            else:
                pause = POLL_SECONDS
            self.turns.take_ticket()
            if time.monotonic() >= deadline:
                raise InterpError(
                    f"catalog '{self.path}' is held by another process for over {wait_seconds:.0f} s; "
                    "close it and rerun") from None
            time.sleep(pause)

    def others_waiting(self) -> bool:
        """Whether another process is waiting for this catalog: a holder that works in turns lets it go."""
        return self.turns.others_waiting()

    def _check_schema(self, read_only: bool) -> None:
        refuse_objects(self.con, self.path)
        tables = {row[0] for row in self.con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        if "schema_info" not in tables:
            if tables:
                raise InterpError(
                    f"'{self.path}' is a DuckDB file but not an interp catalog (tables: {sorted(tables)})")
            if not read_only:
                create(self.con)
                self.current = True
            return
        row = self.con.execute("SELECT value FROM schema_info WHERE key = 'schema_version'").fetchone()
        version = int(row[0]) if row else None
        if version is None or version > SCHEMA_VERSION:
            raise InterpError(
                f"catalog '{self.path}' has schema version {version}, newer than this interp-agent "
                f"understands ({SCHEMA_VERSION}); upgrade interp-agent to read it"
            )
        if version < SCHEMA_VERSION and not read_only:
            with self.transaction() as con:
                migrate(con, version)
            version = SCHEMA_VERSION
        check_columns(self.con, self.path, version)
        self.current = version == SCHEMA_VERSION

    def close(self) -> None:
        try:
            if self.current:  # stamped while our lock still keeps other writers out
                if not self.read_only:
                    self.con.execute("CHECKPOINT")  # what closing would write
                stamp = file_stamp(self.path)
                if stamp[0] is None:  # a file that is not there (any more) is never taken as checked
                    CHECKED.pop(self.key, None)
                else:
                    CHECKED[self.key] = stamp
        except duckdb.Error:
            CHECKED.pop(self.key, None)  # closing writes what the checkpoint could not: no stamp to trust
        finally:
            self.con.close()
            self.turns.end_turn()

    def __enter__(self) -> Self:
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

    def _one(self, sql: str, params: list) -> dict | None:
        # fetchall, not fetchone: DuckDB 2 refuses relation queries on a connection with an unfinished result.
        cursor = self.con.execute(sql, params)
        rows = cursor.fetchall()
        if not rows:
            return None
        return dict(zip([d[0] for d in cursor.description], rows[0], strict=True))

    def has_table(self, name: str) -> bool:
        """False for a table added by a later schema than a catalog opened read-only (so never upgraded) has."""
        return bool(self._value("SELECT count(*) FROM information_schema.tables WHERE table_name = ?", [name]))

    def _value(self, sql: str, params: list) -> Any:
        """The one value a query that always returns one row (a count) returns."""
        row = self._one(sql, params)
        assert row is not None, sql
        return next(iter(row.values()))

    def all_rows(self, sql: str, params: list | None = None) -> list[dict]:
        """A query's rows as dicts, for the table families and for readers above the catalog (the web pages)."""
        cursor = self.con.execute(sql, params or [])
        names = [d[0] for d in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
