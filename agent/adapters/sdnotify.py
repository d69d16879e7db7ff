"""systemd service notification and a health-gated watchdog, in pure Python.

What it is for
--------------
``umps-agent.service`` is ``Type=notify`` with ``WatchdogSec=``. systemd then
expects three things from the agent:

- ``READY=1`` once its loops run (until then the unit is "activating" and the
  kiosk, ordered after it, waits);
- ``STATUS=...`` lines a person reads in ``systemctl status umps-agent``
  ("online, fix 3D, backlog 0, status available");
- ``WATCHDOG=1`` at least once per ``WatchdogSec``; if the pings stop,
  systemd kills the agent and ``Restart=always`` starts it again.

How it works
------------
The protocol (sd_notify(3)) is one datagram of ``KEY=VALUE`` lines sent on an
``AF_UNIX`` ``SOCK_DGRAM`` socket whose address systemd puts in
``$NOTIFY_SOCKET``: a file system path, or an abstract socket written with a
leading ``@``. That takes a few lines of ``socket``; no libsystemd binding is
needed. Without ``$NOTIFY_SOCKET`` (run by hand, in tests, under the HIL rig)
every call is a no-op, so the runtime can call it unconditionally.

A watchdog that pings from a timer thread no matter what would only prove
that the timer thread lives. :class:`Watchdog` instead runs the registered
:class:`HealthCheck` callables (core loop ticked recently, serial reader
thread alive, publish path progressing) every interval and pings *only when
all of them pass*. A check that fails, raises or hangs stops the pings, and
systemd restarts the unit within ``WatchdogSec``. The default interval is half
of ``$WATCHDOG_USEC``, as sd_watchdog_enabled(3) recommends.

Liveness is not progress: a core loop caught in an error loop still ticks. The
runtime's progress checks (telemetry produced on schedule, inbox draining) are
marked ``restart_now``: when one fails, the watchdog also sends
``WATCHDOG=trigger`` (systemd 243+), and systemd runs the watchdog action (kill,
then ``Restart=always``) at once rather than ``WatchdogSec`` after the last ping.

:class:`Heartbeat`, :func:`thread_alive` and :class:`Progress` build the usual
checks; the runtime wires the real ones.

Nothing here raises into the caller: a notification that cannot be sent is
logged and reported as ``False``, because losing a status line must never
take the agent down.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

log = logging.getLogger(__name__)

Clock = Callable[[], float]
CheckResult = tuple[bool, str]


# ------------------------------------------------------------------ notifier


def _socket_address(path: str) -> str | bytes:
    """Turn a ``$NOTIFY_SOCKET`` value into an address for ``sendto``.

    A leading ``@`` names a socket in the abstract namespace, which the
    kernel spells with a leading NUL byte.
    """
    if path.startswith("@"):
        return b"\0" + path[1:].encode()
    return path


class Notifier:
    """Send sd_notify(3) messages to systemd (or to a test's socket).

    ``socket_path`` defaults to ``$NOTIFY_SOCKET``; when there is none the
    notifier is disabled and every method returns ``False`` without doing
    anything. Safe to call from any thread.
    """

    def __init__(self, socket_path: str | None = None, *, env: Mapping[str, str] | None = None) -> None:
        environ = os.environ if env is None else env
        path = socket_path if socket_path is not None else environ.get("NOTIFY_SOCKET", "")
        self._address: str | bytes | None = None
        if path.startswith(("/", "@")):
            self._address = _socket_address(path)
        elif path:
            # systemd 254+ may hand out vsock: addresses (VMs); the agent runs
            # on the vehicle's own systemd, so just say why nothing is sent.
            log.warning("NOTIFY_SOCKET %r is not a unix socket; systemd notifications are off", path)
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        """True when there is a socket to notify."""
        return self._address is not None

    def notify(self, *assignments: str) -> bool:
        """Send ``KEY=VALUE`` assignments as one datagram; True if sent."""
        if self._address is None or not assignments:
            return False
        payload = "\n".join(assignments).encode("utf-8", "replace")
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                self._sock.sendto(payload, self._address)
            except OSError as exc:
                # systemd gone (shutdown) or socket full: never fatal. Drop the
                # socket so the next call starts afresh.
                log.warning("sd_notify %s failed: %s", assignments[0].split("=", 1)[0], exc)
                self._close_locked()
                return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Tell systemd the agent is up (``READY=1``), optionally with a status."""
        fields = ["READY=1"]
        if status is not None:
            fields.append("STATUS=" + _one_line(status))
        return self.notify(*fields)

    def status(self, text: str) -> bool:
        """Set the free-form status line shown by ``systemctl status``."""
        return self.notify("STATUS=" + _one_line(text))

    def stopping(self, status: str | None = None) -> bool:
        """Tell systemd the agent is shutting down (``STOPPING=1``)."""
        fields = ["STOPPING=1"]
        if status is not None:
            fields.append("STATUS=" + _one_line(status))
        return self.notify(*fields)

    def watchdog_ping(self) -> bool:
        """Send one keep-alive (``WATCHDOG=1``)."""
        return self.notify("WATCHDOG=1")

    def watchdog_trigger(self, status: str) -> bool:
        """Ask systemd to act now as if the watchdog had expired (``WATCHDOG=trigger``, systemd 243+)."""
        return self.notify("WATCHDOG=trigger", "STATUS=" + _one_line(status))

    def close(self) -> None:
        """Close the socket (a later call opens it again)."""
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _one_line(text: str) -> str:
    # A newline would start a new KEY=VALUE assignment in the datagram.
    return " ".join(str(text).split())


def status_line(*, link: str, fix: str, backlog: int, unit_status: str, **extra: object) -> str:
    """The human status line: ``online, fix 3D, backlog 0, status available``.

    Extra keyword parts are appended as ``name value`` in the order given.
    """
    parts = [link, f"fix {fix}", f"backlog {backlog}", f"status {unit_status}"]
    parts += [f"{name.replace('_', ' ')} {value}" for name, value in extra.items()]
    return ", ".join(parts)


# ------------------------------------------------------------------- checks


@dataclass(frozen=True, slots=True)
class HealthCheck:
    """A named liveness test: ``fn()`` returns ``(ok, detail)``.

    ``detail`` says what was seen ("core loop last ticked 42.0 s ago") so the
    log line that explains a restart is readable on its own.
    """

    name: str
    fn: Callable[[], CheckResult]
    # Failing means the agent is making no progress and will not by itself (a core stuck in an
    # error loop): ask systemd for the restart at once instead of waiting out WatchdogSec.
    restart_now: bool = False

    def run(self) -> CheckResult:
        """Run the check; an exception counts as a failure, never escapes."""
        try:
            ok, detail = self.fn()
        except Exception as exc:  # noqa: BLE001 - a broken check is an unhealthy agent
            return False, f"check raised {type(exc).__name__}: {exc}"
        return bool(ok), str(detail)


class Heartbeat:
    """"This loop ran recently": the loop calls :meth:`beat` every iteration.

    The check fails when the last beat is older than ``max_age`` seconds (or
    there has been none since ``max_age`` after creation). ``beat`` is one
    float store, cheap enough for a 10 Hz loop.
    """

    def __init__(self, name: str, max_age: float, *, clock: Clock = time.monotonic) -> None:
        if max_age <= 0:
            raise ValueError(f"heartbeat {name!r}: max_age must be > 0, got {max_age!r}")
        self.name = name
        self.max_age = max_age
        self._clock = clock
        self._last = clock()

    def beat(self) -> None:
        """Record that the loop is alive now."""
        self._last = self._clock()

    def __call__(self) -> CheckResult:
        age = self._clock() - self._last
        if age <= self.max_age:
            return True, f"{self.name} ticked {age:.1f} s ago"
        return False, f"{self.name} last ticked {age:.1f} s ago (limit {self.max_age:g} s)"

    def check(self) -> HealthCheck:
        """This heartbeat as a :class:`HealthCheck`."""
        return HealthCheck(self.name, self)


def thread_alive(name: str, thread: Callable[[], threading.Thread | None] | threading.Thread) -> HealthCheck:
    """A check that a thread is alive.

    ``thread`` may be the thread itself or a callable returning the current
    one (a reader that is restarted gets a new ``Thread`` object).
    """

    def fn() -> CheckResult:
        current = thread if isinstance(thread, threading.Thread) else thread()
        if current is None:
            return False, f"{name} thread not started"
        if current.is_alive():
            return True, f"{name} thread alive"
        return False, f"{name} thread {current.name!r} has died"

    return HealthCheck(name, fn)


class Progress:
    """"Work that is waiting gets done": a stall detector for a pipeline.

    ``pending()`` says how much is waiting (e.g. outbox backlog while the link
    is up; the runtime returns 0 while offline, where waiting is normal) and
    ``done()`` a counter that grows as work completes (e.g. messages
    acknowledged by the broker). The check fails when work has been pending
    and ``done()`` has not moved for ``max_stall`` seconds.
    """

    def __init__(
        self,
        name: str,
        pending: Callable[[], int],
        done: Callable[[], int],
        max_stall: float,
        *,
        clock: Clock = time.monotonic,
    ) -> None:
        self.name = name
        self._pending = pending
        self._done = done
        self.max_stall = max_stall
        self._clock = clock
        self._last_done = done()
        self._since = clock()

    def __call__(self) -> CheckResult:
        now = self._clock()
        done, pending = self._done(), self._pending()
        if done != self._last_done or pending <= 0:
            self._last_done, self._since = done, now
            return True, f"{self.name}: {pending} pending, {done} done"
        stalled = now - self._since
        if stalled <= self.max_stall:
            return True, f"{self.name}: {pending} pending, waiting {stalled:.1f} s"
        return False, f"{self.name}: {pending} pending, no progress for {stalled:.1f} s (limit {self.max_stall:g} s)"

    def check(self, *, restart_now: bool = False) -> HealthCheck:
        """This detector as a :class:`HealthCheck`."""
        return HealthCheck(self.name, self, restart_now)


# ------------------------------------------------------------------ watchdog


def watchdog_interval(env: Mapping[str, str] | None = None) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, or None when no watchdog is asked.

    Like sd_watchdog_enabled(3): ``$WATCHDOG_PID``, when set, must be this
    process (otherwise the variables were inherited from a parent).
    """
    environ = os.environ if env is None else env
    usec = environ.get("WATCHDOG_USEC", "")
    pid = environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid != str(os.getpid()):
        return None
    try:
        value = int(usec)
    except ValueError:
        log.warning("WATCHDOG_USEC=%r is not an integer; watchdog off", usec)
        return None
    if value <= 0:
        return None
    return value / 2_000_000


@dataclass(frozen=True, slots=True)
class Verdict:
    """One round of checks: healthy only if every check passed."""

    healthy: bool
    results: tuple[tuple[str, bool, str], ...]  # (name, ok, detail)
    restart_now: bool = False  # a failed check asks for the restart at once

    @property
    def failures(self) -> tuple[tuple[str, str], ...]:
        """(name, detail) of every failed check."""
        return tuple((name, detail) for name, ok, detail in self.results if not ok)


class Watchdog:
    """Ping systemd's watchdog only while every health check passes.

    ``interval`` defaults to :func:`watchdog_interval` (half ``WatchdogSec``);
    with neither, the watchdog is disabled and :meth:`start` does nothing.
    :meth:`check_once` runs one round synchronously (the thread calls it; so
    can a test). Transitions between healthy and unhealthy are logged once
    and put in the status line, so ``systemctl status`` and the journal say
    which check stopped the pings.
    """

    def __init__(
        self,
        notifier: Notifier,
        checks: Sequence[HealthCheck],
        interval: float | None = None,
        *,
        clock: Clock = time.monotonic,
        env: Mapping[str, str] | None = None,
    ) -> None:
        if interval is None:
            interval = watchdog_interval(env)
        if interval is not None and interval <= 0:
            raise ValueError(f"watchdog interval must be > 0 s, got {interval!r}")
        self.notifier = notifier
        self.interval = interval
        self._checks = list(checks)
        self._clock = clock
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._healthy: bool | None = None
        self._triggered = False
        self.pings = 0
        self.last_verdict: Verdict | None = None

    @property
    def enabled(self) -> bool:
        """True when systemd (or the caller) asked for a watchdog."""
        return self.interval is not None

    def add(self, check: HealthCheck) -> None:
        """Register one more check (takes effect at the next round)."""
        with self._lock:
            self._checks.append(check)

    def check_once(self) -> Verdict:
        """Run every check; ping systemd only if all passed."""
        with self._lock:
            checks = list(self._checks)
        runs = [(c, c.run()) for c in checks]
        results = tuple([(c.name, ok, detail) for c, (ok, detail) in runs])  # of a list: see nmea._gsa
        urgent = any(c.restart_now and not ok for c, (ok, _) in runs)
        verdict = Verdict(all(ok for _, ok, _ in results), results, urgent)
        self.last_verdict = verdict
        if verdict.healthy:
            if self.notifier.watchdog_ping():
                self.pings += 1
        self._report_transition(verdict)
        if urgent and not self._triggered:
            self._triggered = True
            why = "; ".join(f"{name}: {detail}" for name, detail in verdict.failures)
            log.critical("no progress, asking systemd for a restart now: %s", why)
            self.notifier.watchdog_trigger(f"no progress, restarting: {why}")
        elif verdict.healthy:
            self._triggered = False
        return verdict

    def _report_transition(self, verdict: Verdict) -> None:
        if verdict.healthy == self._healthy:
            return
        was_known = self._healthy is not None
        self._healthy = verdict.healthy
        if not verdict.healthy:
            why = "; ".join(f"{name}: {detail}" for name, detail in verdict.failures)
            log.error("watchdog pings withheld: %s", why)
            self.notifier.status(f"unhealthy, watchdog pings withheld: {why}")
        elif was_known:
            log.warning("health checks pass again; watchdog pings resumed")

    def start(self) -> None:
        """Start the ping thread (no-op when disabled or already running)."""
        if self.interval is None or self._thread is not None:
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="sd-watchdog", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread; raise if it does not end within ``timeout`` s.

        A check that hangs keeps the thread inside it; that is the point
        (no pings), but it means stop() cannot join it and says so.
        """
        thread = self._thread
        if thread is None:
            return
        self._stop.set()
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"watchdog thread did not stop within {timeout} s (a health check is blocked)")
        self._thread = None

    def _run(self) -> None:
        assert self.interval is not None
        next_due = self._clock()
        while not self._stop.is_set():
            try:
                self.check_once()
            except Exception:  # noqa: BLE001 - keep the thread; missing pings restart us anyway
                log.exception("watchdog round failed")
            # Fixed rate: a slow check does not stretch the period.
            next_due += self.interval
            delay = next_due - self._clock()
            if delay < 0:
                next_due = self._clock()
                delay = 0.0
            self._stop.wait(delay)
