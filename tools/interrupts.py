"""Ctrl-C as a request that long loops honour at a safe boundary (a batch, a finished feature)."""

import os
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOPPING = "\nstopping once the work in hand is saved; press Ctrl-C again to stop at once\n"


class StopRequested(Exception):
    """Ctrl-C was pressed; the loop stopped at a boundary with its work so far saved."""


@contextmanager
def stop_at_batch_boundary() -> Iterator[dict]:
    """Turn the first Ctrl-C into a request the loop honours at its next boundary, so a checkpoint never
    holds a half-folded batch and a feature is never half-written; a second Ctrl-C interrupts at once."""
    request = {"stop": False}
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handle(_signum, _frame):
        if request["stop"]:
            raise KeyboardInterrupt
        request["stop"] = True
        try:  # os.write, not print or logging: this runs between any two bytecodes, a logger's own included
            os.write(sys.stderr.fileno(), STOPPING.encode())
        except (OSError, ValueError):  # no stderr to tell
            pass

    previous = signal.signal(signal.SIGINT, handle)
    try:
        yield request
    finally:
        signal.signal(signal.SIGINT, previous)
