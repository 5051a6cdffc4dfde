"""The ask sessions beside a catalog (`<catalog>.sessions.sqlite`): LangGraph's checkpoints, one thread a
session, and a table of what each session is about."""

import json
import sqlite3
import uuid
from pathlib import Path
from typing import Any

import ormsgpack
from langgraph.checkpoint.sqlite import SqliteSaver

from tools.errors import InterpError

NOT_PLAIN = ("holds a checkpoint that is not plain data ({why}); interp-agent never writes one, so it is "
             "refused rather than decoded: start a new session")


class PlainDataSerializer:
    """Checkpoints as plain data only: JSON out; JSON, or msgpack without extension types (what earlier
    versions wrote), in. A sessions file may come from someone else, and LangGraph's default serializer
    rebuilds arbitrary Python objects from msgpack extension types, which can run code."""

    def __init__(self, path: Path):
        self.path = path

    def dumps_typed(self, obj: Any) -> tuple[str, bytes]:
        if obj is None:
            return "null", b""
        return "json", json.dumps(obj, ensure_ascii=False).encode()

    def loads_typed(self, data: tuple[str, bytes]) -> Any:
        kind, payload = data
        try:
            if kind == "null":
                return None
            if kind == "json":
                return json.loads(payload)
            if kind == "msgpack":
                return ormsgpack.unpackb(payload, ext_hook=self._refuse_extension,
                                         option=ormsgpack.OPT_NON_STR_KEYS)
        except (ValueError, ormsgpack.MsgpackDecodeError):
            # ormsgpack reports a refused extension type as "ext_hook failed", a ValueError like bad bytes.
            raise InterpError(f"sessions file {self.path} "
                              f"{NOT_PLAIN.format(why=f'{kind} with objects or undecodable')}") from None
        raise InterpError(f"sessions file {self.path} {NOT_PLAIN.format(why=f'type {kind!r}')}")

    @staticmethod
    def _refuse_extension(code: int, data: bytes) -> Any:
        raise ValueError(f"msgpack extension type {code}")


def sessions_path(catalog_path: Path) -> Path:
    return Path(catalog_path).with_name(Path(catalog_path).name + ".sessions.sqlite")


class Sessions:
    """The ask sessions beside one catalog, in one SQLite file: LangGraph's checkpoints (a session is a
    thread) and a table of what each session is about, to resume one and to list them."""

    def __init__(self, path: Path):
        self.path = path
        # The saver serialises its own use of the connection with a lock; LangGraph may write from a worker.
        self.conn = sqlite3.connect(str(path), check_same_thread=False)
        self.conn.execute("CREATE TABLE IF NOT EXISTS ask_sessions (session_id TEXT PRIMARY KEY, "
                          "created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP, feature_set_id TEXT NOT NULL, "
                          "feature INTEGER NOT NULL, graph TEXT NOT NULL, llm TEXT NOT NULL, "
                          "questions INTEGER NOT NULL DEFAULT 0, last_question TEXT)")
        self.conn.commit()
        self.saver = SqliteSaver(self.conn, serde=PlainDataSerializer(path))
        self.saver.setup()

    def close(self) -> None:
        self.conn.close()

    def _rows(self, where: str = "", params: tuple = ()) -> list[dict]:
        cursor = self.conn.execute(f"SELECT * FROM ask_sessions {where} ORDER BY created_at, session_id", params)
        names = [column[0] for column in cursor.description]
        return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def all(self) -> list[dict]:
        return self._rows()

    def get(self, session_id: str) -> dict:
        rows = self._rows("WHERE session_id = ?", (session_id,))
        if not rows:
            known = ", ".join(row["session_id"] for row in self.all()[-5:]) or "none yet"
            raise InterpError(f"no ask session '{session_id}' in {self.path} (latest: {known}); "
                              "`interp ask --sessions` lists them")
        return rows[0]

    def create(self, feature_set_id: str, feature: int, graph: str, llm: str) -> dict:
        session_id = uuid.uuid4().hex[:8]
        self.conn.execute("INSERT INTO ask_sessions (session_id, feature_set_id, feature, graph, llm) "
                          "VALUES (?, ?, ?, ?, ?)", (session_id, feature_set_id, feature, graph, llm))
        self.conn.commit()
        return self.get(session_id)

    def focus(self, session_id: str, feature: int) -> None:
        self.conn.execute("UPDATE ask_sessions SET feature = ? WHERE session_id = ?", (feature, session_id))
        self.conn.commit()

    def asked(self, session_id: str, question: str) -> None:
        self.conn.execute("UPDATE ask_sessions SET questions = questions + 1, last_question = ? "
                          "WHERE session_id = ?", (question, session_id))
        self.conn.commit()
