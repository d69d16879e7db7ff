"""What the ``umps-hil`` commands share at the console: one printer, and Ctrl-C as a clean stop."""

from __future__ import annotations

import signal
import threading
from typing import Callable


def printer(quiet: bool = False) -> Callable[[str], None]:
    """A print for lines from several threads: one whole line at a time, flushed at once."""
    lock = threading.Lock()

    def out(line: str) -> None:
        if not quiet:
            with lock:
                print(line, flush=True)

    return out


def stop_on_signals() -> threading.Event:
    """An event set by SIGINT or SIGTERM, so a run stops cleanly between steps."""
    stop = threading.Event()

    def handler(signum: int, frame: object) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop
