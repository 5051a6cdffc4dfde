"""The terminal face of `interp ask`: tool calls streamed as they run, answers, and the question loop."""

import json
from collections.abc import Callable

from agent.ask.session import Answer, AskSession
from agent.ask.sessions import Sessions
from agent.investigate.toolbox import ToolCall
from agent.views.terminal import table_console, visible_lines
from tools.errors import InterpError
from tools.text import visible

HELP = ("Ask about the feature in plain words; quote text to run it through the model (\"...\"), say ablate or "
        "steer to intervene.\n/feature N switches feature, /history shows earlier answers, /quit or Ctrl-D ends.")


class ToolPrinter:
    """Each tool call as it starts, and the first lines of its result as it ends."""

    def __init__(self, lines: int = 8, width: int = 160, write: Callable[[str], None] | None = None):
        self.lines, self.width = lines, width
        self.write = write or (lambda text: print(text, flush=True))

    def started(self, name: str, arguments: dict | str) -> None:
        shown = arguments if isinstance(arguments, str) else json.dumps(arguments, ensure_ascii=False)
        self.write(visible(f"  -> {name}({shown[:self.width]})"))

    def finished(self, call: ToolCall) -> None:
        body = call.result.split("\n")[1:-1]  # inside the <tool_result> tags
        for line in body[:self.lines]:
            self.write(f"     {visible(line[:self.width])}")
        if len(body) > self.lines:
            self.write(f"     ... {len(body) - self.lines} more lines")


def show_answer(answer: Answer) -> None:
    print(f"\n{visible_lines(answer.text)}\n", flush=True)
    print(f"({answer.tool_calls} tool calls; LLM tokens {answer.usage.prompt_tokens:,} prompt + "
          f"{answer.usage.completion_tokens:,} completion; run {answer.run_id})", flush=True)


def show_history(session: AskSession, last: int | None = None) -> None:
    turns = session.history
    for turn in turns[-last:] if last else turns:
        print(f"Q: {visible(turn['question'])}\nA: {visible_lines(turn['answer'])}\n")


def switch_feature(session: AskSession, argument: str) -> None:
    if not argument.strip().isdigit():
        raise InterpError(f"'/feature {visible(argument.strip())}' needs a feature number, e.g. /feature 12")
    session.feature = int(argument)
    print(f"now asking about feature {session.feature}")


def converse(session: AskSession, read: Callable[[str], str] = input) -> None:
    """Questions until /quit or end of input. A failed or stopped (Ctrl-C) question ends that question,
    not the session: what was answered before stays checkpointed."""
    try:
        import readline  # noqa: F401  (line editing and history for input())
    except ImportError:
        pass
    print(HELP, flush=True)
    while True:
        try:
            line = read(f"\nfeature {session.feature}> ").strip()
        except EOFError:
            print()
            return
        except KeyboardInterrupt:
            print()
            return
        command, _, argument = line.partition(" ")
        try:
            if not line:
                continue
            if command in ("/quit", "/exit", "/q"):
                return
            if command == "/feature":
                switch_feature(session, argument)
            elif command == "/history":
                show_history(session)
            elif command.startswith("/"):
                print(f"unknown command '{command}'. {HELP}")
            else:
                show_answer(session.ask(line))
        except InterpError as error:
            print(f"error: {visible(str(error))}", flush=True)
        except KeyboardInterrupt:
            print("\n(question stopped; the session goes on)", flush=True)


def show_sessions(sessions: Sessions) -> None:
    from rich.table import Table

    table = Table(title=f"ask sessions in {sessions.path}")
    for column in ("session", "created", "feature set", "feature", "graph", "llm", "questions", "last question"):
        table.add_column(column, overflow="fold")
    for row in sessions.all():
        table.add_row(row["session_id"], row["created_at"], row["feature_set_id"], str(row["feature"]), row["graph"],
                      row["llm"], str(row["questions"]), visible(row["last_question"] or ""))
    table_console().print(table)
