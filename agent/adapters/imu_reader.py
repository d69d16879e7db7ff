"""The crash sensor's reader: a thread that posts the IIO buffer's samples to the core in batches.

How it works
------------
The thread opens the device (:func:`agent.adapters.iio.open_device`: found by name, set up as far
as this process may, checked for ±16 g and the channels the rules need), then waits on the
buffer's character device with ``poll`` (1 s at most, so ``stop()`` is always quick). The
kernel wakes it once ``buffer/watermark`` samples wait (``rate_hz / wake_hz``: ten times a
second by default); it reads every whole record waiting, decodes them and calls ``on_samples``
with the batch, which posts one event to the inbox. A batch is a tuple of
``(t, ax, ay, az, gx, gy, gz)``: the kernel's time stamp on the monotonic clock, g and °/s in
the board's frame.

What the buffer held before this run (a kernel buffer that filled while the agent was down, or
the rig's pipe) is stale: until the first fresh sample, samples more than ``STALE_S`` older than
the clock are dropped, and counted.

A device that is missing, vanishes (a loose connector) or falls silent for ``silence_s`` is
reported once through ``on_state("lost", why)``, closed, and looked for again with a back-off
(1 s doubling to ``REOPEN_MAX_S``); when it is back, ``on_state("ok", what)``. Nothing here can
stop the agent: any error is reported the same way.
"""

from __future__ import annotations

import logging
import os
import select
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.adapters import iio
from agent.config import ImuConfig

log = logging.getLogger(__name__)

STALE_S = 1.0
REOPEN_MIN_S = 1.0
REOPEN_MAX_S = 10.0
POLL_MS = 1000
READ_BYTES = 1 << 16

Sample = tuple[float, float, float, float, float, float, float]


@dataclass
class ImuCounters:
    """For ``umps-agent status``: what the reader saw."""

    state: str = "starting"  # "ok", "lost", "starting"
    detail: str = ""
    device: str = ""
    rate_hz: float = 0.0
    range_g: float = 0.0
    batches: int = 0
    samples: int = 0
    stale_dropped: int = 0
    opens: int = 0
    losses: int = 0
    not_written: list[str] = field(default_factory=list)


class ImuReader:
    """See the module docstring. ``start()``, ``stop()``; callbacks run on the reader's thread."""

    def __init__(self, config: ImuConfig, *, on_samples: Callable[[tuple[Sample, ...]], None],
                 on_state: Callable[[str, str], None], clock: Callable[[], float] = time.monotonic):
        self.config = config
        self._on_samples = on_samples
        self._on_state = on_state
        self._clock = clock
        self.silence_s = max(2.0, 5.0 / config.wake_hz)
        self.counters = ImuCounters()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="imu-reader", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        thread = self._thread
        if thread is not None:
            thread.join(timeout)
            if thread.is_alive():
                raise RuntimeError("imu reader thread did not stop")
            self._thread = None

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    # ------------------------------------------------------------ thread

    def _report(self, state: str, detail: str) -> None:
        if (state, detail) == (self.counters.state, self.counters.detail):
            return
        previous = self.counters.state
        self.counters.state, self.counters.detail = state, detail
        if state == "lost":
            self.counters.losses += previous == "ok"
            log.error("crash sensor unavailable: %s", detail)
        else:
            log.info("crash sensor: %s", detail)
        try:
            self._on_state(state, detail)
        except Exception:  # noqa: BLE001 - a callback must never stop the reader
            log.exception("crash sensor: state callback failed")

    def _run(self) -> None:
        wait = REOPEN_MIN_S
        while not self._stop.is_set():
            try:
                self._read_device()
                wait = REOPEN_MIN_S  # it ran, then went away: look again soon
            except iio.IioError as exc:
                self._report("lost", str(exc))
            except Exception as exc:  # noqa: BLE001 - the reader reports, it never dies
                log.exception("crash sensor reader failed")
                self._report("lost", f"reader error: {exc}")
            if self._stop.wait(wait):
                return
            wait = min(REOPEN_MAX_S, wait * 2)

    def _read_device(self) -> None:
        cfg = self.config
        device, settings, fd, not_written = iio.open_device(cfg.sysfs_dir, cfg.dev_dir, cfg.device,
                                                            rate_hz=cfg.rate_hz, wake_hz=cfg.wake_hz)
        c = self.counters
        c.opens += 1
        c.device, c.rate_hz, c.range_g, c.not_written = device.name, settings.rate_hz, settings.range_g, not_written
        if not_written:
            log.warning("crash sensor: settings left as found (read-only here; umps-agent imu setup writes them): %s",
                        ", ".join(not_written))
        if settings.rate_hz < cfg.rate_hz * 0.9:
            log.warning("crash sensor: %s samples at %g Hz, not the configured %d Hz", device.name, settings.rate_hz,
                        cfg.rate_hz)
        decoder = iio.Decoder(settings, iio.clock_offset(settings.clock))
        poller = select.poll()
        poller.register(fd, select.POLLIN | select.POLLERR | select.POLLHUP)
        first = True
        last_data = self._clock()
        try:
            self._report("ok", f"{device.name} ({device.sysfs.name}) at {settings.rate_hz:g} Hz, "
                               f"±{settings.range_g:.0f} g")
            while not self._stop.is_set():
                events = poller.poll(POLL_MS)
                now = self._clock()
                data = self._read_all(fd) if events else b""
                if not data:
                    if now - last_data > self.silence_s:
                        gone = "gone" if not device.sysfs.exists() else f"silent for {now - last_data:.0f} s"
                        raise iio.IioError(f"{device.name} ({device.sysfs.name}) {gone}")
                    continue
                last_data = now
                samples = decoder.feed(data)
                if first:  # until the first fresh sample: what waited from before this run is stale
                    fresh = [s for s in samples if s[0] >= now - STALE_S]
                    c.stale_dropped += len(samples) - len(fresh)
                    samples, first = fresh, not fresh
                if samples:
                    c.batches += 1
                    c.samples += len(samples)
                    self._on_samples(tuple(samples))
        finally:
            os.close(fd)

    @staticmethod
    def _read_all(fd: int) -> bytes:
        chunks = []
        while True:
            try:
                chunk = os.read(fd, READ_BYTES)
            except BlockingIOError:
                break
            if not chunk:
                break
            chunks.append(chunk)
            if len(chunk) < READ_BYTES:
                break
        return b"".join(chunks)
