"""Give chronyd the GNSS time: samples for chrony's SOCK reference clock.

What it is for
--------------
The unit has no real-time clock. Without gpsd, the agent is the only reader
of the receiver's serial port (a port cannot have two readers), so it is the
agent that must tell chronyd what time the receiver says it is. chrony's
``refclock SOCK`` driver takes exactly that: one datagram per measurement on
a Unix socket that chronyd creates (``firmware-config/chrony/umps-gnss.conf``
names it ``/run/chrony.umps.sock``, refid ``NMEA``). The PPS refclock then
locks onto it to number its pulses.

How it works
------------
Each sample is chrony's ``struct sock_sample`` (refclock_sock.c) in the
machine's native layout::

    struct timeval tv;   /* system time of the measurement */
    double offset;       /* true time minus system time, seconds */
    int pulse;           /* 0: a full time stamp, not a bare pulse */
    int leap;            /* 0 normal, 1 insert, 2 delete leap second */
    int _pad;
    int magic;           /* 0x534f434b, "SOCK" */

The caller passes the UTC time the receiver reported for an epoch and the
system (wall-clock) time at which the agent received the sentence that
completed it; the offset is their difference. The sentence's transmit delay
makes that offset late by a roughly constant amount, which chrony's
``offset`` option removes (see the conf file).

``struct timeval`` is two C ``long`` here: right for 64-bit Raspberry Pi OS
and for 32-bit builds with the classic 32-bit ``time_t``. A 32-bit system
built with a 64-bit ``time_t`` (Debian 13 armhf) needs ``time64=True``;
chronyd logs "Unexpected length of SOCK sample" when the layout is wrong.

When chronyd is not running (or the socket is absent) :meth:`ChronySock.send`
returns False and logs once per outage: time sync is a best effort, never a
reason to disturb the agent.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import socket
import struct
import threading

log = logging.getLogger(__name__)

DEFAULT_PATH = "/run/chrony.umps.sock"
SOCK_MAGIC = 0x534F434B

LEAP_NONE, LEAP_INSERT, LEAP_DELETE = 0, 1, 2


def pack_sample(system_time: float, offset: float, *, leap: int = LEAP_NONE, pulse: bool = False, time64: bool = False) -> bytes:
    """One ``struct sock_sample`` for a measurement at ``system_time``."""
    if leap not in (LEAP_NONE, LEAP_INSERT, LEAP_DELETE):
        raise ValueError(f"leap must be 0, 1 or 2, got {leap!r}")
    if not (math.isfinite(system_time) and math.isfinite(offset)):
        raise ValueError("system_time and offset must be finite numbers")
    seconds = math.floor(system_time)
    micros = min(int(round((system_time - seconds) * 1_000_000)), 999_999)
    layout = "@qqdiiii" if time64 else "@lldiiii"
    return struct.pack(layout, seconds, micros, offset, int(pulse), leap, 0, SOCK_MAGIC)


class ChronySock:
    """Send GNSS time samples to chronyd's SOCK refclock socket."""

    def __init__(self, path: str = DEFAULT_PATH, *, time64: bool = False) -> None:
        self.path = path
        self.time64 = time64
        self.sent = 0
        self.failed = 0
        self._sock: socket.socket | None = None
        self._lock = threading.Lock()
        self._down = False  # log an outage once, not once per fix

    def send(self, gnss_utc: dt.datetime, received_at: float, *, leap: int = LEAP_NONE) -> bool:
        """Send the receiver's UTC time for an epoch, received at ``received_at``.

        ``gnss_utc`` must be timezone-aware (a fix with date and time);
        ``received_at`` is ``time.time()`` when the sentence arrived.
        Returns True when chronyd took the datagram.
        """
        if gnss_utc.tzinfo is None:
            raise ValueError("gnss_utc must be timezone-aware (UTC)")
        offset = gnss_utc.timestamp() - received_at
        data = pack_sample(received_at, offset, leap=leap, time64=self.time64)
        with self._lock:
            try:
                if self._sock is None:
                    self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
                    self._sock.setblocking(False)  # never wait on chronyd
                self._sock.sendto(data, self.path)
            except OSError as exc:
                self.failed += 1
                if not self._down:
                    log.warning("chronyd refclock socket %s unavailable (%s); GNSS time not shared", self.path, exc)
                    self._down = True
                return False
            if self._down:
                log.info("chronyd refclock socket %s reachable again", self.path)
                self._down = False
            self.sent += 1
            return True

    def close(self) -> None:
        """Close the socket."""
        with self._lock:
            if self._sock is not None:
                self._sock.close()
                self._sock = None
