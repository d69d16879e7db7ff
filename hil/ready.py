"""The systemd side of the agent's readiness: a ``NOTIFY_SOCKET`` that hears ``READY=1``.

On the unit, systemd starts the agent as a ``Type=notify`` service: the
service is up when the agent says ``READY=1`` (``agent.adapters.sdnotify``),
once every adapter and its core are running. The agent's link may connect,
and its ``online`` birth go out, a moment before that. The rig gives each
agent it starts the same kind of socket (an abstract unix datagram socket:
no path to clean up, no length limit), so a scenario's ``t = 0`` can wait
until the agent is up, as systemd would, and a slow start never eats into
the scenario's first steps.

A thread reads the datagrams (``STATUS=`` lines follow every second) and
keeps when ``READY=1`` arrived; :meth:`ReadyListener.wait_ready` blocks on it.
"""

from __future__ import annotations

import itertools
import os
import socket
import threading
import time

_ids = itertools.count(1)


class ReadyListener:
    """One agent's ``NOTIFY_SOCKET``: started before the agent, closed after it."""

    def __init__(self) -> None:
        self.address = f"@umps-hil-{os.getpid()}-{next(_ids)}"  # what NOTIFY_SOCKET says
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(b"\0" + self.address[1:].encode())
        self._sock.settimeout(0.5)  # so close() is noticed
        self._ready_at: float | None = None
        self._cond = threading.Condition()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._read, name="sd-notify", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._closed.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                return
            if b"READY=1" in data.split(b"\n"):
                with self._cond:
                    if self._ready_at is None:
                        self._ready_at = time.monotonic()
                    self._cond.notify_all()

    def wait_ready(self, timeout: float) -> float | None:
        """Monotonic time ``READY=1`` arrived, waiting up to ``timeout`` s; None if it has not."""
        with self._cond:
            self._cond.wait_for(lambda: self._ready_at is not None, timeout)
            return self._ready_at

    def close(self) -> None:
        self._closed.set()
        self._thread.join(2.0)
        self._sock.close()
        if self._thread.is_alive():
            raise RuntimeError("the sd_notify reader did not stop")
