"""Telemetry reports shaped as the unit builds them, for the outbox's tests."""

from __future__ import annotations

import json

from agent.core.publish import Lane, Publish


def realistic_report(seq: int, lane: Lane = Lane.BACKLOG, **extra: object) -> Publish:
    """A report shaped as the unit builds it (compact JSON, ~350 bytes)."""
    body = {
        "unit": "rabat-017", "seq": seq, "ts": f"2026-11-26T01:{seq // 60 % 60:02d}:{seq % 60:02d}.512Z",
        "time_source": "system",
        "fix": {"mode": 3, "time": f"2026-11-26T01:{seq // 60 % 60:02d}:{seq % 60:02d}.000Z",
                "lat": 34.26101333333333 + seq * 1e-5, "lon": -6.580213333333333 - seq * 1e-5, "alt": 12.5,
                "speed": 13.2, "track": 271.3, "hdop": 0.9, "sats": 11, "age": 0.043},
        "status": "en_route", "siren": True, "emergency": False, "call": {"id": "C-2026-0042", "state": "en_route"},
        **extra,
    }
    return Publish("telemetry", json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(), lane, seq=seq)
