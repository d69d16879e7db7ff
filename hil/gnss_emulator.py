"""The GNSS emulator: a receiver on a serial port, driving or replaying.

How it works
------------
An emulator owns a *stream* (``hil.gnss_sources``: a drive along a route or
a capture replay), a list of *ports* (``hil.serial_ports``: a pty behind a
symlink, a TCP port, or both) and a list of *fault windows*
(``hil.gnss_faults``). Emulated time is ``clock() - t0`` seconds since
``start()``; ``clock`` is injected (``time.monotonic`` by default) so tests
move time by hand and never sleep.

``poll()`` does all the work and is the only place time advances:

1. fault windows whose start or end has come are applied, in time order
   with the epochs (an unplug closes the ports; its end plugs them back);
2. every epoch due by now is generated (``stream.emit``) with the fix-lost and
   time-jump faults active at that epoch, then damaged line by line by the
   active line faults (garbage, bad checksums, truncation), and written to
   every plugged port unless the receiver is silent;
3. ports are serviced (TCP clients accepted, bytes from the agent kept).

Epochs keep coming while unplugged or silent: the vehicle keeps moving and
``truth()`` records it, the bytes just go nowhere. ``start()`` runs ``poll``
on a thread that wakes for each epoch (and at least every 50 ms for the
ports); ``start(run_thread=False)`` leaves the calling to you.

Faults: ``inject(fault, duration=None)`` now, ``schedule([(t, fault,
duration), ...])`` at emulated times; ``unplug()``/``replug()`` by hand. A
fault is a ``gnss_faults.Fault`` or its kind name (``"tunnel"``,
``"bad_checksum"``, ...). ``duration=None`` lasts until ``clear()`` (or, for
unplug, ``replug()``).

Example::

    emu = GnssEmulator(RouteSource(), rate_hz=5, talker="GN")
    path = emu.serve_pty("/tmp/umps-gnss")    # give this path to the agent
    emu.schedule([(30, "tunnel", 8), (60, "unplug", 3)])
    emu.start()
    ...
    emu.stop()
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Union

from hil.gnss_faults import Fault, as_fault, corrupt_checksum, garbage, truncate
from hil.gnss_sources import CaptureSource, RouteSource, TruthPoint
from hil.serial_ports import PtyPort, TcpPort

log = logging.getLogger(__name__)

Source = Union[RouteSource, CaptureSource]
TRUTH_MAX = 200_000
MAX_EPOCHS_PER_POLL = 1_000  # a stalled host catches up, but within reason
IDLE_WAKE_S = 0.05
JOIN_TIMEOUT_S = 3.0


@dataclass(frozen=True, slots=True)
class Emission:
    """One epoch of the receiver.

    ``data`` is what went out on the ports (empty while unplugged or silent);
    ``lines`` the sentences as the receiver formed them, damage included;
    ``faults`` the fault kinds active at ``t``.
    """

    t: float
    data: bytes
    lines: tuple[bytes, ...]
    faults: tuple[str, ...]
    heard: bool
    truth: TruthPoint | None


@dataclass(slots=True)
class _Window:
    fault: Fault
    start: float
    end: float | None
    started: bool = False
    ended: bool = False

    def active(self, t: float) -> bool:
        return self.start <= t and (self.end is None or t < self.end) and not self.ended


class GnssEmulator:
    """An NMEA receiver at 1, 5 or 10 Hz on a pty and/or TCP port."""

    def __init__(
        self,
        source: Source | None = None,
        *,
        rate_hz: int = 1,
        talker: str = "GN",
        clock: Callable[[], float] = time.monotonic,
        seed: int = 7,
    ):
        self.source = source if source is not None else RouteSource()
        self.rate_hz = rate_hz
        self.talker = talker
        self._stream = self.source.stream(rate_hz=rate_hz, talker=talker, seed=seed)
        self._clock = clock
        self._rng = random.Random(seed)
        self._lock = threading.RLock()
        self._polled = threading.Condition(self._lock)  # notified after every poll
        self._ports: list[PtyPort | TcpPort] = []
        self._windows: list[_Window] = []
        self._truth: deque[TruthPoint] = deque(maxlen=TRUTH_MAX)
        self._t0: float | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._plugged = True
        self.stats = {"epochs": 0, "bytes": 0, "unheard_epochs": 0, "damaged_lines": 0, "poll_errors": 0}

    # ------------------------------------------------------------ ports

    def serve_pty(self, link_path: str | Path) -> str:
        """Serve on a new pseudo-terminal behind ``link_path``; return the path."""
        port = PtyPort(link_path)
        with self._lock:
            if self._plugged:
                port.plug()
            self._ports.append(port)
        return str(port.link)

    def serve_tcp(self, host: str = "127.0.0.1", port: int = 0) -> int:
        """Serve on TCP (pyserial ``socket://host:PORT``); return the port."""
        tcp = TcpPort(host, port)
        with self._lock:
            if self._plugged:
                tcp.plug()
            else:  # reserve the number now so it is known before replug
                tcp.plug()
                tcp.unplug()
            self._ports.append(tcp)
        return tcp.port

    @property
    def addresses(self) -> list[str]:
        """What to give the agent: symlink paths and ``socket://`` URLs."""
        return [p.address for p in self._ports]

    @property
    def plugged(self) -> bool:
        return self._plugged

    def received(self) -> bytes:
        """Everything the agent wrote to the receiver (bounded tail)."""
        with self._lock:
            return b"".join(bytes(p.received) for p in self._ports)

    # ----------------------------------------------------------- running

    @property
    def elapsed(self) -> float:
        """Emulated seconds since ``start()`` (0 before)."""
        if self._t0 is None:
            return 0.0
        return self._clock() - self._t0

    def start(self, *, run_thread: bool = True) -> None:
        with self._lock:
            if self._t0 is None:
                self._t0 = self._clock()
        if run_thread and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="gnss-emulator", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        """Stop talking, unplug every port (symlinks removed), join the thread."""
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None:
            thread.join(JOIN_TIMEOUT_S)
            if thread.is_alive():
                raise RuntimeError("GNSS emulator thread did not stop")
        with self._lock:
            for p in self._ports:
                p.close()

    def __enter__(self) -> "GnssEmulator":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll()
            except Exception:  # the thread must survive a bad epoch; count it
                self.stats["poll_errors"] += 1
                log.exception("GNSS emulator poll failed")
            self._stop.wait(self._delay())

    def _delay(self) -> float:
        with self._lock:
            now = self.elapsed
            due = self._stream.next_due()
            candidates = [IDLE_WAKE_S]
            if due is not None:
                candidates.append(due - now)
            for w in self._windows:
                if not w.started:
                    candidates.append(w.start - now)
                elif w.end is not None and not w.ended:
                    candidates.append(w.end - now)
            return max(0.0, min(candidates))

    def poll(self) -> list[Emission]:
        """Emit every epoch due by now; return them (oldest first)."""
        with self._lock:
            if self._t0 is None:
                return []
            now = self.elapsed
            out: list[Emission] = []
            while len(out) < MAX_EPOCHS_PER_POLL:
                due = self._stream.next_due()
                if due is None or due > now:
                    break
                self._apply_transitions(due)
                out.append(self._emit(due))
            self._apply_transitions(now)
            for p in self._ports:
                p.service()
            self._polled.notify_all()
            return out

    def wait_for(self, predicate: Callable[["GnssEmulator"], bool], timeout: float) -> bool:
        """Block until ``predicate(self)`` holds after a poll; False on timeout.

        For example ``emu.wait_for(lambda e: b"$PUBX" in e.received(), 2)``.
        """
        with self._polled:
            return self._polled.wait_for(lambda: predicate(self), timeout)

    def _emit(self, t: float) -> Emission:
        active = [w.fault for w in self._windows if w.active(t)]
        kinds = tuple(sorted({f.kind for f in active}))
        fix_lost = "fix_lost" in kinds
        offset = sum(f.offset_s for f in active if f.kind == "time_jump")
        lines, truth = self._stream.emit(t, fix_lost=fix_lost, time_offset_s=offset)
        damaged = [self._damage(line, active) for line in lines]
        data = b"".join(damaged)
        # What the receiver transmits, whether or not a port is attached.
        heard = self._plugged and "silence" not in kinds
        if heard:
            for p in self._ports:
                p.write(data)
            self.stats["bytes"] += len(data)
        else:
            self.stats["unheard_epochs"] += 1
            data = b""
        self.stats["epochs"] += 1
        if truth is not None:
            self._truth.append(truth)
        return Emission(t, data, tuple(damaged), kinds, heard, truth)

    def _damage(self, line: bytes, active: list[Fault]) -> bytes:
        out = line
        for f in active:
            if f.kind not in ("garbage", "bad_checksum", "truncated") or self._rng.random() >= f.ratio:
                continue
            if f.kind == "bad_checksum":
                out = corrupt_checksum(out)
            elif f.kind == "truncated":
                out = truncate(out, self._rng)
            else:
                out = garbage(self._rng) + out
        if out != line:
            self.stats["damaged_lines"] += 1
        return out

    # ------------------------------------------------------------ faults

    def inject(self, fault: Fault | str, duration: float | None = None) -> None:
        """Start ``fault`` now, for ``duration`` seconds or until cleared."""
        with self._lock:
            now = self.elapsed
            self._add(as_fault(fault), now, duration)
            self._apply_transitions(now)

    def schedule(self, items: Iterable[tuple[float, Fault | str, float | None]]) -> None:
        """Faults at emulated times: ``[(t_seconds, fault, duration), ...]``."""
        with self._lock:
            for t, fault, duration in items:
                if t < 0:
                    raise ValueError(f"fault time must be >= 0, got {t}")
                self._add(as_fault(fault), float(t), duration)
            if self._t0 is not None:
                self._apply_transitions(self.elapsed)

    def clear(self, kind: str | None = None) -> None:
        """End active (and pending) faults now, all or of one kind."""
        with self._lock:
            now = self.elapsed
            kind = as_fault(kind).kind if kind else None
            for w in self._windows:
                if kind is None or w.fault.kind == kind:
                    if w.start > now:
                        w.started = w.ended = True  # never happens
                    elif w.end is None or w.end > now:
                        w.end = now
            self._apply_transitions(now)

    def unplug(self) -> None:
        """Pull the receiver's plug until ``replug()``."""
        self.inject("unplug")

    def replug(self) -> None:
        """Plug back in at the same symlink path / TCP port."""
        self.clear("unplug")

    def active_faults(self) -> tuple[str, ...]:
        with self._lock:
            now = self.elapsed
            return tuple(sorted({w.fault.kind for w in self._windows if w.active(now)}))

    def _add(self, fault: Fault, start: float, duration: float | None) -> None:
        if duration is not None and duration <= 0:
            raise ValueError(f"fault duration must be > 0, got {duration}")
        if fault.kind == "time_jump" and not self.source.supports_time_jump:
            raise ValueError("time_jump needs a generated source: a replayed capture carries its own clock")
        self._windows.append(_Window(fault, start, None if duration is None else start + duration))

    def _apply_transitions(self, t: float) -> None:
        changed = False
        for w in self._windows:
            if not w.started and w.start <= t:
                w.started = True
                changed = True
            if w.started and not w.ended and w.end is not None and w.end <= t:
                w.ended = True
                changed = True
        if not changed:
            return
        want_plugged = not any(w.fault.kind == "unplug" and w.started and not w.ended for w in self._windows)
        if want_plugged != self._plugged:
            self._plugged = want_plugged
            for p in self._ports:
                if want_plugged:
                    p.plug()
                else:
                    p.unplug()
        # Forget finished windows so a long run does not accumulate them.
        self._windows = [w for w in self._windows if not w.ended]

    # ------------------------------------------------------------- truth

    def truth(self) -> list[TruthPoint]:
        """Where the vehicle really was at each emitted epoch (drives only)."""
        with self._lock:
            return list(self._truth)
