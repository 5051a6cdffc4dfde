"""Asking about a feature from its page: `interp ask`'s graph run in a worker thread, each tool call and the
answer streamed to the browser as server-sent events while they happen, and recorded like a terminal
session (an `ask` run in the catalog, the conversation checkpointed beside it, resumable by id)."""

import asyncio
import json
import threading
from collections.abc import AsyncIterator
from pathlib import Path

from agent.investigate.toolbox import ToolCall
from agent.labeling.config import LabelConfig
from tools.errors import InterpError

MAX_QUESTION_CHARS = 1000


class StreamWatcher:
    """Tool calls as events, handed from the graph's thread to the event loop that streams them."""

    def __init__(self, emit):
        self.emit = emit

    def started(self, name: str, arguments: dict | str) -> None:
        self.emit("tool", {"tool": name, "arguments": arguments})

    def finished(self, call: ToolCall) -> None:
        self.emit("result", {"tool": call.tool, "ok": call.ok, "result": call.result, "seconds": call.seconds})


def earlier_sessions(catalog_path: Path, set_id: str, feature: int) -> list[dict]:
    """This feature's ask sessions, newest first, without creating the sessions file."""
    from agent.ask.sessions import Sessions, sessions_path

    path = sessions_path(catalog_path)
    if not path.exists():
        return []
    sessions = Sessions(path)
    try:
        return [row for row in reversed(sessions.all())
                if row["feature_set_id"] == set_id and row["feature"] == feature]
    finally:
        sessions.close()


async def ask_events(config: LabelConfig, catalog_path: Path, set_ref: str, feature: int, question: str,
                     session_id: str | None, graph: str, lock: threading.Lock) -> AsyncIterator[str]:
    """`event: NAME\\ndata: JSON` for: session, tool, result, answer or failure, then done."""
    loop = asyncio.get_running_loop()
    queue: asyncio.Queue[tuple[str, dict]] = asyncio.Queue()

    def emit(event: str, data: dict) -> None:
        loop.call_soon_threadsafe(queue.put_nowait, (event, data))

    def work() -> None:
        from agent.ask.session import open_session

        try:
            with lock:  # one question at a time: they share the machine's cores and the catalog's writer
                with open_session(config, catalog_path, None if session_id else set_ref, feature, session_id,
                                  graph, watcher=StreamWatcher(emit)) as session:
                    emit("session", {"session": session.id, "feature": session.feature})
                    answer = session.ask(question[:MAX_QUESTION_CHARS])
                    emit("answer", {"answer": answer.text, "run_id": answer.run_id, "tool_calls": answer.tool_calls})
        except InterpError as error:
            emit("failure", {"error": str(error)})
        except Exception as error:  # the stream must end with a reason, whatever broke
            emit("failure", {"error": f"{type(error).__name__}: {error}"})
        finally:
            emit("done", {})

    threading.Thread(target=work, name="ask", daemon=True).start()
    while True:
        event, data = await queue.get()
        yield f"event: {event}\ndata: {json.dumps(data, default=str)}\n\n"
        if event == "done":
            return
