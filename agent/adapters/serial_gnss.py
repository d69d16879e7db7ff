"""Serial GNSS reader: a thread that reads the receiver and reports fixes.

How it works
------------
The port is a pyserial URL (``/dev/serial0``, ``/dev/ttyUSB0``, a pty path,
``socket://host:port``, ``loop://``) opened with ``serial_for_url`` and a short
read timeout, so the thread notices ``stop()`` within a fraction of a second
whatever the receiver does. Bytes go to the pure :class:`GnssDecoder`; each
epoch it completes is handed to ``on_fix``.

The receiver is *lost* when a read fails (USB unplugged, pty closed: pyserial
raises ``SerialException``/``OSError``) or when no valid NMEA sentence has
arrived for ``silence_timeout`` seconds (dead receiver, cut wire, wrong baud
rate). Then ``on_lost(reason)`` is called once, the port is closed, and it is
reopened with tenacity: exponential back-off with jitter, capped at
``reopen_max_wait``, sleeping on the stop event so ``stop()`` interrupts it.
When sentences flow again, ``on_restored()`` is called. A port that cannot be
opened at start is reported lost the same way.

Callbacks run on the reader thread. They should only post an event and
return; if one raises anyway, the error is logged and counted and the thread
carries on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import serial
import tenacity

from agent.core.events import Fix
from agent.core.gnss import GnssCounters, GnssDecoder

__all__ = ["ReaderCounters", "SerialGnssReader"]

log = logging.getLogger(__name__)


@dataclass
class ReaderCounters(GnssCounters):
    """Decoder counters plus the port's life: opens, losses, callback errors."""

    opens: int = 0
    open_failures: int = 0
    losses: int = 0
    callback_errors: int = 0


class _Stopped(Exception):
    """stop() was called while (re)opening."""


class SerialGnssReader:
    """Reads NMEA from a serial port on its own thread (see module docs)."""

    def __init__(
        self,
        port: str,
        baudrate: int,
        *,
        on_fix: Callable[[Fix], None],
        on_lost: Callable[[str], None],
        on_restored: Callable[[], None],
        silence_timeout: float = 3.0,
        reopen_max_wait: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        read_timeout: float = 0.2,
    ) -> None:
        self.port = port
        self.baudrate = baudrate
        self._on_fix = on_fix
        self._on_lost = on_lost
        self._on_restored = on_restored
        self._silence_timeout = silence_timeout
        self._reopen_max_wait = reopen_max_wait
        self._clock = clock
        self._read_timeout = read_timeout
        self._decoder = GnssDecoder()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._opens = 0
        self._open_failures = 0
        self._losses = 0
        self._callback_errors = 0
        self._lost = False  # an outage has been reported and not yet ended
        #: True while the port is open.
        self.connected = False
        #: Monotonic time of the last valid NMEA sentence (None before any).
        self.last_data_mono: float | None = None

    # ------------------------------------------------------------ control

    @property
    def counters(self) -> ReaderCounters:
        """A snapshot of the counters (safe to read from any thread)."""
        return ReaderCounters(
            **vars(self._decoder.counters),  # flat: vars(), not asdict() (see status_report's "counters")
            opens=self._opens,
            open_failures=self._open_failures,
            losses=self._losses,
            callback_errors=self._callback_errors,
        )

    @property
    def alive(self) -> bool:
        """The reader thread runs (for the watchdog's health check)."""
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("reader already started")
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name=f"gnss-reader {self.port}", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the thread and close the port; raise if it will not stop."""
        self._stop.set()
        thread = self._thread
        if thread is None:
            return
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError(f"GNSS reader on {self.port} did not stop within {timeout} s")
        self._thread = None

    # ------------------------------------------------------------- thread

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                port = self._open()
                if port is None:
                    return
                try:
                    reason = self._pump(port)
                finally:
                    self.connected = False
                    try:
                        port.close()
                    except Exception:  # closing a vanished device may fail too
                        log.debug("closing %s failed", self.port, exc_info=True)
                if reason is None:
                    return  # stopped: nobody is waiting for a last partial epoch
                self._deliver(self._decoder.flush())  # what the receiver said before it went
                self._decoder.reset()
                self._report_lost(reason)
        except Exception as exc:  # never die silently: say so, and the watchdog sees the age
            log.exception("GNSS reader on %s crashed", self.port)
            self.connected = False
            self._report_lost(f"reader failed: {exc!r}")

    def _open(self) -> serial.SerialBase | None:
        """Open the port, retrying with back-off until it opens or stop()."""

        def attempt() -> serial.SerialBase:
            if self._stop.is_set():
                raise _Stopped
            return serial.serial_for_url(self.port, baudrate=self.baudrate, timeout=self._read_timeout)

        def before_sleep(state: tenacity.RetryCallState) -> None:
            self._open_failures += 1
            exc = state.outcome.exception() if state.outcome else None
            if state.attempt_number == 1:
                self._report_lost(f"cannot open {self.port}: {exc}")
            log.debug("opening %s failed (%s), retry %d", self.port, exc, state.attempt_number)

        cap = self._reopen_max_wait
        backoff = tenacity.wait_exponential(multiplier=min(0.2, cap), max=cap)
        jitter = tenacity.wait_random(0, min(0.5, cap / 4))

        def wait(state: tenacity.RetryCallState) -> float:
            return min(cap, backoff(state) + jitter(state))

        retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((serial.SerialException, OSError, ValueError)),
            wait=wait,
            stop=tenacity.stop_when_event_set(self._stop),
            sleep=self._stop.wait,
            before_sleep=before_sleep,
            reraise=True,
        )
        try:
            port = retrying(attempt)
        except (_Stopped, serial.SerialException, OSError, ValueError):
            return None
        self._opens += 1
        self.connected = True
        log.info("GNSS port %s open", self.port)
        return port

    def _pump(self, port: serial.SerialBase) -> str | None:
        """Read until stop (None) or until the receiver is lost (the reason)."""
        decoder = self._decoder
        counters = decoder.counters
        last_sentence = self._clock()
        while not self._stop.is_set():
            try:
                data = port.read(1)
                if data:
                    waiting = port.in_waiting
                    if waiting:
                        data += port.read(waiting)
            except (serial.SerialException, OSError) as exc:
                return f"read failed: {exc}"
            now = self._clock()
            if data:
                before = counters.sentences_ok
                fixes = decoder.feed(data)
                if counters.sentences_ok != before:
                    last_sentence = now
                    self.last_data_mono = now
                    if self._lost:
                        self._lost = False
                        log.info("GNSS on %s restored", self.port)
                        self._call(self._on_restored)
                self._deliver(fixes)
            if now - last_sentence >= self._silence_timeout:
                return f"no NMEA for {self._silence_timeout:g} s"
        return None

    # ------------------------------------------------------------ helpers

    def _report_lost(self, reason: str) -> None:
        if self._lost:
            return
        self._lost = True
        self._losses += 1
        log.warning("GNSS on %s lost: %s", self.port, reason)
        self._call(self._on_lost, reason)

    def _deliver(self, fixes: list[Fix]) -> None:
        for fix in fixes:
            self._call(self._on_fix, fix)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        try:
            fn(*args)
        except Exception:
            self._callback_errors += 1
            log.exception("GNSS callback %r failed", getattr(fn, "__name__", fn))
