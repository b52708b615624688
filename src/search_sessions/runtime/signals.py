"""Signals: SIGINT/SIGTERM stop a run cleanly; a second one, later, is fatal."""

from __future__ import annotations

import signal
import threading
import time

from ..control import STOP

SECOND_SIGNAL_AFTER = 1.0
"""Seconds after which another SIGINT/SIGTERM is a second one, which is fatal. Sooner it is
the same stop: Ctrl-C reaches a local cluster's processes from the terminal and again
from the parent, which forwards it for the case it alone was signalled."""


def stop_on_signals() -> None:
    """SIGINT/SIGTERM end the run cleanly (see :data:`~search_sessions.control.STOP`);
    a second one is fatal."""
    STOP.clear()
    if threading.current_thread() is not threading.main_thread():
        return
    first = [0.0]

    def handle(signum: int, _frame: object) -> None:
        now = time.monotonic()
        if not STOP.is_set():
            first[0] = now
            STOP.set()
        elif now - first[0] >= SECOND_SIGNAL_AFTER:
            raise KeyboardInterrupt

    signal.signal(signal.SIGINT, handle)
    signal.signal(signal.SIGTERM, handle)
