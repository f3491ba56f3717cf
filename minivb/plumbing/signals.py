"""SIGTERM turned into an exception, for long work that stops as Ctrl-C does (plain Python, no torch).

A cluster's preemption or ``kill`` sends SIGTERM; by default it ends the process with no word and
nothing saved. Inside :func:`sigterm_raises` it raises an exception instead, so ``finally`` blocks
and the caller's handling (keep what is finished, say how to continue) run.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Callable


@contextlib.contextmanager
def sigterm_raises(make_error: Callable[[], BaseException]):
    """While the block runs, SIGTERM raises ``make_error()``. Handlers can only be installed in the main thread;
    elsewhere nothing changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise make_error()

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
