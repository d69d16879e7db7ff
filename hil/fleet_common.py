"""What the fleet modes share: a report's time and JSON, a subscriber's tally, a report's seq and age.

``hil/fleet.py`` (paho units and subscriber) and ``hil/fleet_wire.py``
(plain-socket ones) both build on these, so a unit's report and a room's
account are written once.
"""

from __future__ import annotations

import datetime as dt
import json
import time
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from agent.core import telemetry_cbor


def iso(now: dt.datetime) -> str:
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def to_json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, separators=(",", ":")).encode()


def birth(seq: int, now_iso: str) -> bytes:
    """A simulated unit's ``online`` birth: it starts at ``seq`` and declares no gap (it never crashes)."""
    return to_json({"online": True, "agent_version": "fleet-sim", "config_version": 0, "config_hash": "",
                    "ts": now_iso, "seq_start": seq, "seq_gap": None})


def status(now_iso: str) -> bytes:
    return to_json({"status": "available", "siren": False, "call": None, "emergency": False, "ts": now_iso})


def call_response(payload: bytes, now_iso: str) -> bytes | None:
    """The ``call/response`` ``received`` to a ``call`` message (None for one without an id)."""
    try:
        call_id = json.loads(payload)["id"]
    except (ValueError, KeyError, TypeError):
        return None
    return to_json({"id": call_id, "response": "received", "ts": now_iso})


def report(unit: str, seq: int, now_iso: str, state: Any, encoding: str) -> bytes:
    """A telemetry report of the contract at a route ``state``, as the agent encodes it (JSON or CBOR)."""
    body = {
        "unit": unit, "seq": seq, "ts": now_iso, "time_source": "gnss",
        "fix": {"mode": 3, "time": now_iso, "lat": round(state.lat, 6), "lon": round(state.lon, 6),
                "alt": round(state.alt, 1), "speed": round(state.speed, 2), "track": round(state.track, 1),
                "hdop": 0.9, "sats": 11, "age": 0.05},
        "status": "available", "siren": False, "emergency": False, "call": None,
    }
    return telemetry_cbor.encode_report(body) if encoding == "cbor" else to_json(body)


@dataclass
class FleetStats:
    """What the broker delivered to the measuring subscriber."""

    received: int = 0
    first: float | None = None
    last: float | None = None
    per_unit: dict[str, list[float]] = field(default_factory=dict)  # arrival times
    seqs: dict[str, list[int]] = field(default_factory=dict)
    births: dict[str, list[bytes]] = field(default_factory=dict)  # ``online`` payloads per unit
    sys: dict[str, str] = field(default_factory=dict)
    counters: dict[str, list[tuple[float, int]]] = field(default_factory=dict)  # $SYS counter samples
    latencies: list[float] = field(default_factory=list)  # arrival minus the report's ts, seconds

    def broker_rate(self, name: str, start: float, end: float) -> float | None:
        """Messages per second from two samples of a broker counter inside [start, end]."""
        samples = [(t, v) for t, v in self.counters.get(name, []) if start <= t <= end]
        if len(samples) < 2 or samples[-1][0] <= samples[0][0]:
            return None
        return (samples[-1][1] - samples[0][1]) / (samples[-1][0] - samples[0][0])


def seq_and_latency(payload: bytes) -> tuple[int | None, float | None]:
    """A report's seq and its age on arrival (now minus ``ts``), read as cheaply as the encoding allows."""
    try:
        if telemetry_cbor.is_cbor(payload) and not telemetry_cbor.is_batch(payload):
            report = telemetry_cbor.report_map(payload)
            return report[telemetry_cbor.K_SEQ], time.time() - report[telemetry_cbor.K_TS] / 1000
        report = telemetry_cbor.decode_telemetry(payload)[0]
        sent = dt.datetime.fromisoformat(report["ts"].replace("Z", "+00:00"))
        return report["seq"], (dt.datetime.now(dt.timezone.utc) - sent).total_seconds()
    except (ValueError, KeyError, TypeError, AttributeError):
        return None, None


class Schedule:
    """What both fleet drivers do alike: report on a shared schedule, settle, account their CPU.

    A driver has ``sims`` (units with ``connected``), ``stop`` (an event), ``pump(timeout)``
    (one turn of its socket loop), ``emit(unit, t, utc)`` (the unit's next report, sent) and
    ``wait(due, now, end)`` (service the sockets until the next unit is due).
    """

    sims: list[Any]
    stop: threading.Event
    _cpu0: float
    pump: Callable[[float], None]
    emit: Callable[[Any, float, dt.datetime], None]
    wait: Callable[[float, float, float], None]

    def report(self, duration_s: float, rate_hz: float, tick: Callable[[float], None] = lambda _t: None,
               every_s: float = 5.0) -> tuple[float, float]:
        """Each unit reports at ``rate_hz`` for ``duration_s``; returns (start, measured seconds).

        Unit i reports at start + i*period/units + k*period (spread evenly);
        ``tick(t)`` is called every ``every_s`` seconds.
        """
        units = len(self.sims)
        period = 1.0 / rate_hz
        start = time.monotonic()
        due = [start + i * period / units for i in range(units)]
        nxt = 0
        last_tick = start
        end = start + duration_s
        while not self.stop.is_set():
            now = time.monotonic()
            if now >= end:
                break
            if due[nxt] <= now:
                utc = dt.datetime.now(dt.timezone.utc)
                # Units are due in round-robin order, so only the next ones need checking.
                for _ in range(units):
                    if due[nxt] > now:
                        break
                    u = self.sims[nxt]
                    if u.connected:
                        self.emit(u, now - start, utc)
                    due[nxt] += period
                    nxt = (nxt + 1) % units
            self.wait(due[nxt], now, end)
            if now - last_tick >= every_s:
                last_tick = now
                tick(now - start)
        return start, time.monotonic() - start

    def settle(self, seconds: float, until: Callable[[], bool] = lambda: False) -> None:
        """Keep the sockets serviced for ``seconds`` (or until ``until()``)."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not until() and not self.stop.is_set():
            self.pump(0.05)

    def cpu(self) -> float:
        return time.process_time() - self._cpu0
