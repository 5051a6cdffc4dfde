"""`interp ask` as a person uses it: a real terminal (tmux), keys sent, the screen read back; the
embedded SmolLM2 answers, a tiny model is the subject. Slow: it loads the real LLM twice."""

import shlex
import shutil
import subprocess
import sys
import time
import uuid

import duckdb
import pytest

from tests.agent.test_label import catalog  # noqa: F401  (fixture)

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux (apt install tmux)")]


class Terminal:
    def __init__(self, command: str):
        self.name = f"ask-{uuid.uuid4().hex[:8]}"
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "220", "-y", "60",
                        f"{command}; echo EXITED $?; sleep 600"], check=True)

    def screen(self) -> str:
        return subprocess.run(["tmux", "capture-pane", "-p", "-J", "-S", "-", "-t", self.name], check=True,
                              capture_output=True, text=True).stdout

    def wait_for(self, text: str, times: int = 1, timeout: float = 300) -> str:
        """The screen (its whole scrollback) once `text` is on it `times` times."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            screen = self.screen()
            if screen.count(text) >= times:
                return screen
            time.sleep(0.5)
        raise AssertionError(f"{text!r} did not appear {times} times within {timeout:.0f} s; the screen:\n"
                             f"{self.screen()}")

    def type(self, line: str) -> None:
        subprocess.run(["tmux", "send-keys", "-t", self.name, "-l", line], check=True)
        subprocess.run(["tmux", "send-keys", "-t", self.name, "Enter"], check=True)

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], check=False)


@pytest.fixture
def terminals():
    opened: list[Terminal] = []
    yield lambda command: opened.append(Terminal(command)) or opened[-1]
    for terminal in opened:
        terminal.close()


def ask_command(catalog_path, *args: str) -> str:
    return shlex.join([sys.executable, "-m", "agent.cli", "ask", *args, "--catalog", str(catalog_path),
                       "--device", "cpu"])


def test_an_interactive_session_streams_experiments_and_resumes(catalog, terminals):  # noqa: F811
    first = terminals(ask_command(catalog, "resid_post.1", "3"))
    screen = first.wait_for("feature 3> ")
    session = screen.split("session ", 1)[1].split(":", 1)[0]
    first.type('Does it fire on "the cat sat"?')
    screen = first.wait_for("tool calls;")
    assert '-> activations_on({"feature": 3, "texts": ["the cat sat"]})' in screen
    assert "(peak " in screen and "Measured:" in screen
    first.type("/feature 5")
    first.wait_for("now asking about feature 5")
    first.type("/quit")
    first.wait_for(f"resume with: interp ask --session {session}")
    first.wait_for("EXITED 0")

    again = terminals(ask_command(catalog, "--session", session))
    screen = again.wait_for("feature 5> ")
    assert f"session {session}" in screen and "1 earlier questions" in screen
    assert 'Q: Does it fire on "the cat sat"?' in screen  # the checkpointed conversation came back
    again.type("What happens if I ablate it?")
    screen = again.wait_for("tool calls;")
    assert '-> ablate({"feature": 5' in screen and "zeroing feature 5: loss" in screen
    again.type("/quit")
    again.wait_for("EXITED 0")

    with duckdb.connect(str(catalog), read_only=True) as con:
        runs = con.execute("SELECT json_extract_string(config, '$.session'), status FROM runs WHERE kind = 'ask'"
                           ).fetchall()
    assert runs == [(session, "complete"), (session, "complete")]
