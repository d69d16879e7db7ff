"""Compact telemetry: the JSON report as CBOR (RFC 8949), and backlog batches.

Why
---
A JSON report is ~370 bytes; at 1 Hz that is ~1 GB a month per unit on the
cellular bill. The same fields as CBOR with small integer keys and scaled
integers are 45 to 65 bytes, and a backlog batch (several reports in one
PUBLISH, each after the first written as differences from the one before)
~15 bytes a report. ``[telemetry] encoding = "cbor"`` selects it; JSON stays the default.

One source
----------
The core builds the JSON-shaped report (a dict) and this module derives the
CBOR from it; :func:`decode_telemetry` turns any telemetry payload (JSON, a
CBOR report or a CBOR batch) back into those JSON-shaped dicts. So a report
has one definition, and a field added to the JSON report (``ignition``,
``fix.receiver``...) is carried in CBOR at once: under its own name as a text
key until it is given a small integer key here.

The report (a CBOR map, first byte 0xA0-0xBB)
---------------------------------------------
=====  ===============  =======================================================
key    field            CBOR value
=====  ===============  =======================================================
0      ``seq``          unsigned integer
1      ``ts``           integer, milliseconds since 1970-01-01T00:00:00Z
2      ``time_source``  0 ``system`` (absent means this), 1 ``gnss``,
                        2 ``system_unsynced``
3      ``fix``          array ``[mode, time, lat, lon, alt, speed, track,
                        hdop, sats, age]``, trailing nulls left out
4      ``status``       index in :data:`STATUS_TABLE` (text if not in it)
5      ``siren``        true; absent means false
6      ``emergency``    true; absent means false
7      ``call``         ``[id, state]``, state an index in
                        :data:`CALL_STATE_TABLE`; absent means null
8      ``ignition``     true ``on``, false ``off``; absent means null (no
                        ignition line)
9      ``fix.receiver`` index in :data:`RECEIVER_TABLE` (``ok``, ``no_fix``,
                        ``lost``); absent means ``ok``
=====  ===============  =======================================================

In ``fix``: ``time`` is an integer offset in milliseconds from ``ts`` (the
epoch's UTC is ``ts + time``), or the text ``HH:MM:SS.mmm`` while the receiver
has sent no date; ``lat`` and ``lon`` are integers in 1e-7 degree (1.1 cm);
``alt`` decimetres; ``speed`` centimetres per second; ``track`` and ``hdop``
hundredths; ``sats`` an integer; ``age`` milliseconds. ``unit`` is not
carried: it is the topic's unit level (``<prefix>/<unit>/telemetry``). Any
other field is carried under its JSON name (a ``fix`` field as
``"fix.<name>"``). The tables only ever grow at the end.

A report carries every field, so each one reads alone, like its JSON twin. The
slow fields (status, siren, alarm, call) cost 2 to 16 bytes: false and null
are left out, and the call id is kept because a console that joins during a
call must be able to read it from any report.

The backlog batch (a CBOR array, first byte 0x80-0x97)
------------------------------------------------------
Only on ``telemetry/backlog``: ``[report, delta, delta, ...]``. The first
element is a full report as above, so a batch reads alone. Each delta is an
array ``[ts, mode, time, lat, lon, alt, speed, track, hdop, sats, age]`` of
differences from the previous report, optionally followed by a map of the
other fields that changed (same keys as the report; key 0 when ``seq`` is not
the previous ``seq + 1``):

- ``ts``, ``lat`` and ``lon`` are second differences: the difference from
  the previous value plus the previous step (a unit at steady speed and rate
  gives zeros); the other entries are first differences;
- an entry left out at the end means "unchanged"; ``null`` means the field is
  now null; where the previous value was null the entry is the value itself.

Resolution: what the decoder returns equals the JSON twin to within half a
unit of the scale above (0.5e-7 degree, 5 cm, 5 mm/s, 0.005 degree, 0.005);
``seq``, times, ``age`` and every other field are exact.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import cbor2

UTC = dt.timezone.utc

# Wire tables: an index is the contract, so these only ever grow at the end.
STATUS_TABLE = ("available", "en_route", "on_scene", "busy", "out_of_service")
CALL_STATE_TABLE = ("new", "received", "accepted", "en_route", "on_scene", "cleared")
TIME_SOURCE_TABLE = ("system", "gnss", "system_unsynced")
RECEIVER_TABLE = ("ok", "no_fix", "lost")

K_SEQ, K_TS, K_TIME_SOURCE, K_FIX, K_STATUS, K_SIREN, K_EMERGENCY, K_CALL, K_IGNITION, K_RECEIVER = range(10)

# fix array: (JSON name, scale); scale None = carried as is.
FIX_FIELDS: tuple[tuple[str, float | None], ...] = (
    ("mode", None),
    ("time", None),  # offset from ts in ms, or time-of-day text
    ("lat", 1e7),
    ("lon", 1e7),
    ("alt", 10),
    ("speed", 100),
    ("track", 100),
    ("hdop", 100),
    ("sats", None),
    ("age", 1000),
)
FIX_NAMES = tuple(name for name, _ in FIX_FIELDS)
# How far a decoded value may be from its JSON twin (half a scale unit).
RESOLUTION = {name: 0.5 / scale for name, scale in FIX_FIELDS if scale is not None and name != "age"}

# Top-level fields with a small key; values go through the converters below.
_SLOW_KEYS = {
    "time_source": K_TIME_SOURCE,
    "status": K_STATUS,
    "siren": K_SIREN,
    "emergency": K_EMERGENCY,
    "call": K_CALL,
    "ignition": K_IGNITION,
    "fix.receiver": K_RECEIVER,
}
_KEY_NAMES = {v: k for k, v in _SLOW_KEYS.items()}
# Left out of a report when they hold this value.
_DEFAULTS = {"time_source": "system", "siren": False, "emergency": False, "call": None, "ignition": None,
             "fix.receiver": "ok"}
_IGNITION = {"on": True, "off": False}
_SECOND_DIFF = (0, 3, 4)  # delta positions of ts, lat, lon

CONTENT_TYPE = "application/cbor"

# What each small key holds, as the AsyncAPI document says it (:func:`schemas`).
_FIX_DESCRIPTION = (
    "array [" + ", ".join(FIX_NAMES) + "], trailing nulls left out: time an integer offset in ms from ts "
    "(or HH:MM:SS.mmm text without a date), lat/lon integers in 1e-7 degree, alt decimetres, speed cm/s, "
    "track and hdop hundredths, age ms"
)
_KEY_SCHEMAS: dict[int, dict[str, Any]] = {
    K_SEQ: {"x-field": "seq", "description": "unsigned integer: seq", "type": "integer"},
    K_TS: {"x-field": "ts", "description": "integer: ts in milliseconds since 1970-01-01T00:00:00Z",
           "type": "integer"},
    K_TIME_SOURCE: {"x-field": "time_source",
                    "description": "0 system (absent means 0), 1 gnss, 2 system_unsynced (x-table)",
                    "x-table": list(TIME_SOURCE_TABLE)},
    K_FIX: {"x-field": "fix", "description": _FIX_DESCRIPTION, "type": "array", "maxItems": len(FIX_NAMES),
            "x-items": list(FIX_NAMES)},
    K_STATUS: {"x-field": "status", "description": "index in x-table (text if not in it)",
               "x-table": list(STATUS_TABLE)},
    K_SIREN: {"x-field": "siren", "description": "true; absent means false", "type": "boolean"},
    K_EMERGENCY: {"x-field": "emergency", "description": "true; absent means false", "type": "boolean"},
    K_CALL: {"x-field": "call", "description": "[id, state], state an index in x-table; absent means null",
             "type": "array", "x-table": list(CALL_STATE_TABLE)},
    K_IGNITION: {"x-field": "ignition",
                 "description": 'true "on", false "off"; absent means null (no ignition line)', "type": "boolean"},
    K_RECEIVER: {"x-field": "fix.receiver", "description": 'index in x-table; absent means "ok"',
                 "x-table": list(RECEIVER_TABLE)},
}


class TelemetryDecodeError(ValueError):
    """A payload that is not a telemetry report or batch of this contract."""


# ------------------------------------------------------------------ helpers


def is_cbor(payload: bytes) -> bool:
    """True for a CBOR report or batch (a map or an array); JSON starts with ``{``."""
    return bool(payload) and (payload[0] >> 5) in (4, 5)


def is_batch(payload: bytes) -> bool:
    """True for a CBOR backlog batch (an array)."""
    return bool(payload) and payload[0] >> 5 == 4


def _ms(iso_z: str) -> int:
    value = dt.datetime.fromisoformat(iso_z.replace("Z", "+00:00"))
    return round(value.timestamp() * 1000)


def _iso(ms: int) -> str:
    value = dt.datetime.fromtimestamp(ms // 1000, UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _index(table: tuple[str, ...], value: str) -> int | str:
    return table.index(value) if value in table else value


def _name(table: tuple[str, ...], value: Any) -> Any:
    return table[value] if isinstance(value, int) and 0 <= value < len(table) else value


def _scaled(value: Any, scale: float | None) -> Any:
    if value is None or scale is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return value
    return round(value * scale)


def _unscaled(value: Any, scale: float | None) -> Any:
    if value is None or scale is None or not isinstance(value, int) or isinstance(value, bool):
        return value
    if scale == 1000:
        return value / 1000
    digits = len(str(int(scale))) - 1
    return round(value / scale, digits)


def _slow_value(name: str, value: Any) -> Any:
    if name == "time_source":
        return _index(TIME_SOURCE_TABLE, value)
    if name == "status":
        return _index(STATUS_TABLE, value)
    if name == "fix.receiver":
        return _index(RECEIVER_TABLE, value)
    if name == "ignition":
        return _IGNITION.get(value, value)
    if name == "call" and isinstance(value, dict):
        out = [value.get("id"), _index(CALL_STATE_TABLE, value.get("state"))]
        extra = {k: v for k, v in value.items() if k not in ("id", "state")}
        return out + [extra] if extra else out
    return value


def _slow_json(name: str, value: Any) -> Any:
    if name == "time_source":
        return _name(TIME_SOURCE_TABLE, value)
    if name == "status":
        return _name(STATUS_TABLE, value)
    if name == "fix.receiver":
        return _name(RECEIVER_TABLE, value)
    if name == "ignition" and isinstance(value, bool):
        return "on" if value else "off"
    if name == "call" and isinstance(value, list) and len(value) >= 2:
        out = {"id": value[0], "state": _name(CALL_STATE_TABLE, value[1])}
        if len(value) > 2 and isinstance(value[2], dict):
            out.update(value[2])
        return out
    return value


# ------------------------------------------------------------ one report


def _fix_array(fix: dict[str, Any], ts_ms: int) -> list[Any]:
    out = []
    for name, scale in FIX_FIELDS:
        value = fix.get(name)
        if name == "time" and isinstance(value, str) and value.endswith("Z"):
            value = _ms(value) - ts_ms
        out.append(_scaled(value, scale))
    while out and out[-1] is None:
        out.pop()
    return out


def _fix_json(arr: list[Any], ts_ms: int) -> dict[str, Any]:
    fix: dict[str, Any] = {}
    for i, (name, scale) in enumerate(FIX_FIELDS):
        value = arr[i] if i < len(arr) else None
        if name == "time" and isinstance(value, int):
            value = _iso(ts_ms + value)
        fix[name] = _unscaled(value, scale)
    return fix


def _report_map(body: dict[str, Any]) -> dict[Any, Any]:
    """The CBOR map of a JSON-shaped report (see the module docstring)."""
    ts_ms = _ms(body["ts"])
    out: dict[Any, Any] = {K_SEQ: body["seq"], K_TS: ts_ms}
    for name, value in body.items():
        if name in ("unit", "seq", "ts"):
            continue
        if name == "fix" and isinstance(value, dict):
            out[K_FIX] = _fix_array(value, ts_ms)
            for sub, subvalue in value.items():
                if sub not in FIX_NAMES:
                    _put_slow(out, f"fix.{sub}", subvalue)
            continue
        _put_slow(out, name, value)
    return out


def _put_slow(out: dict[Any, Any], name: str, value: Any) -> None:
    if name in _DEFAULTS and value == _DEFAULTS[name]:
        return
    key = _SLOW_KEYS.get(name, name)
    out[key] = _slow_value(name, value)


def _json_from_map(m: dict[Any, Any], unit: str | None) -> dict[str, Any]:
    if not isinstance(m, dict) or not isinstance(m.get(K_SEQ), int) or not isinstance(m.get(K_TS), int):
        raise TelemetryDecodeError("not a telemetry report (needs keys 0 seq and 1 ts)")
    ts_ms = m[K_TS]
    body: dict[str, Any] = {}
    if unit is not None:
        body["unit"] = unit
    body["seq"] = m[K_SEQ]
    body["ts"] = _iso(ts_ms)
    body["time_source"] = "system"
    fix = m.get(K_FIX, [])
    if not isinstance(fix, list):
        raise TelemetryDecodeError("key 3 (fix) must be an array")
    body["fix"] = _fix_json(fix, ts_ms)
    for name, default in _DEFAULTS.items():
        if name.startswith("fix."):
            body["fix"][name[4:]] = default
        else:
            body[name] = default
    body["status"] = None
    for key, value in m.items():
        if key in (K_SEQ, K_TS, K_FIX):
            continue
        name = _KEY_NAMES.get(key, key) if isinstance(key, int) else key
        if not isinstance(name, str):
            continue  # a key from a later version: ignored, as JSON consumers ignore unknown fields
        if name.startswith("fix."):
            body["fix"][name[4:]] = _slow_json(name, value)
        else:
            body[name] = _slow_json(name, value)
    return body


def encode_report(body: dict[str, Any]) -> bytes:
    """The CBOR of one JSON-shaped report (``Unit.report``'s body)."""
    return cbor2.dumps(_report_map(body))


# ------------------------------------------------------------ batches


def _delta_row(m: dict[Any, Any]) -> list[Any]:
    fix = m.get(K_FIX, [])
    return [m[K_TS]] + [fix[i] if i < len(fix) else None for i in range(len(FIX_FIELDS))]


def _others(m: dict[Any, Any]) -> dict[Any, Any]:
    return {k: v for k, v in m.items() if k not in (K_SEQ, K_TS, K_FIX)}


def encode_batch(payloads: list[bytes]) -> bytes:
    """One backlog PUBLISH for several CBOR reports, oldest first (see the module docstring)."""
    if not payloads:
        raise ValueError("an empty batch")
    maps = [_load_map(p) for p in payloads]
    out: list[Any] = [maps[0]]
    prev, step = _delta_row(maps[0]), [0] * (len(FIX_FIELDS) + 1)
    for before, m in zip(maps, maps[1:]):
        row = _delta_row(m)
        delta: list[Any] = []
        new_step = [0] * len(row)
        for i, (old, new) in enumerate(zip(prev, row)):
            if new is None:
                delta.append(None)
            elif old is None or not _numeric(old) or not _numeric(new):
                delta.append(new)
            else:
                new_step[i] = new - old
                delta.append(new - old - (step[i] if i in _SECOND_DIFF else 0))
        while delta and row[len(delta) - 1] == prev[len(delta) - 1]:
            delta.pop()  # left out at the end: unchanged
        changes = {k: v for k, v in _others(m).items() if _others(before).get(k, _MISSING) != v}
        changes.update({k: _DEFAULT_WIRE[k] for k in _others(before) if k not in _others(m) and k in _DEFAULT_WIRE})
        if m[K_SEQ] != before[K_SEQ] + 1:
            changes[K_SEQ] = m[K_SEQ]
        if changes:
            delta.append(changes)
        out.append(delta)
        prev, step = row, new_step
    return cbor2.dumps(out)


_MISSING = object()
# What a default-valued field (left out of a report) is on the wire, for a batch delta.
_DEFAULT_WIRE = {_SLOW_KEYS[name]: _slow_value(name, value) for name, value in _DEFAULTS.items()}


def _numeric(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def report_map(payload: bytes) -> dict[Any, Any]:
    """The raw key map of one CBOR report (a server's fast path: ``m[K_SEQ]``, ``m[K_TS]``)."""
    return _load_map(payload)


def _load_map(payload: bytes) -> dict[Any, Any]:
    m = _loads(payload)
    if not isinstance(m, dict):
        raise TelemetryDecodeError("a batch holds CBOR reports (maps) only")
    return m


def _loads(payload: bytes) -> Any:
    try:
        return cbor2.loads(payload)
    except (cbor2.CBORDecodeError, ValueError, TypeError, RecursionError) as exc:
        raise TelemetryDecodeError(f"not CBOR: {exc}") from None


def _batch_maps(items: list[Any]) -> list[dict[Any, Any]]:
    if not items or not isinstance(items[0], dict):
        raise TelemetryDecodeError("a batch starts with a full report")
    maps = [items[0]]
    prev = _delta_row(items[0])
    step = [0] * len(prev)
    others = _others(items[0])
    seq = items[0].get(K_SEQ)
    for delta in items[1:]:
        if not isinstance(delta, list):
            raise TelemetryDecodeError("a batch delta must be an array")
        changes = delta[-1] if delta and isinstance(delta[-1], dict) else {}
        entries = delta[:-1] if changes else delta
        if len(entries) > len(prev):
            raise TelemetryDecodeError("a batch delta has too many entries")
        row, new_step = [], [0] * len(prev)
        for i, old in enumerate(prev):
            if i >= len(entries):
                row.append(old)
                new_step[i] = 0
                continue
            d = entries[i]
            if d is None:
                row.append(None)
            elif old is None or not _numeric(old) or not _numeric(d):
                row.append(d)
            else:
                value = old + d + (step[i] if i in _SECOND_DIFF else 0)
                new_step[i] = value - old
                row.append(value)
        others = {**others, **{k: v for k, v in changes.items() if k != K_SEQ}}
        seq = changes.get(K_SEQ, seq + 1 if isinstance(seq, int) else seq)
        fix = row[1:]
        while fix and fix[-1] is None:
            fix.pop()
        m = {K_SEQ: seq, K_TS: row[0], K_FIX: fix, **others}
        maps.append(m)
        prev, step = row, new_step
    return maps


# ------------------------------------------------------------ decoding


def decode_telemetry(payload: bytes, topic: str | None = None, *, unit: str | None = None) -> list[dict[str, Any]]:
    """Every report in a telemetry payload, as the JSON-shaped dicts of the contract.

    ``payload`` is what arrived on ``<prefix>/<unit>/telemetry`` or
    ``.../telemetry/backlog``: a JSON report, a CBOR report or a CBOR batch.
    ``unit`` (or the unit level of ``topic``) fills ``unit``, which CBOR does
    not carry. Raises :class:`TelemetryDecodeError` for anything else.
    """
    if unit is None and topic:
        unit = _unit_of(topic)
    if not payload:
        raise TelemetryDecodeError("empty payload")
    if not is_cbor(payload):
        try:
            body = json.loads(payload)
        except (ValueError, RecursionError) as exc:
            raise TelemetryDecodeError(f"neither CBOR nor JSON: {exc}") from None
        if not isinstance(body, dict):
            raise TelemetryDecodeError("a JSON report is an object")
        return [body]
    data = _loads(payload)
    maps = _batch_maps(data) if isinstance(data, list) else [data]
    return [_json_from_map(m, unit) for m in maps]


def _unit_of(topic: str) -> str | None:
    parts = topic.split("/")
    for i, part in enumerate(parts):
        if part == "telemetry" and i >= 1:
            return parts[i - 1]
    return None


# ------------------------------------------------------------------ contract


def schemas() -> dict[str, dict[str, Any]]:
    """The AsyncAPI components ``TelemetryCbor`` and ``TelemetryCborBatch``, from the tables above."""
    report = {
        "type": "object",
        "description": (
            "A CBOR map with unsigned integer keys (shown here as strings, as JSON Schema needs). Fields "
            'without a small key are carried under their JSON name (a fix field as "fix.<name>"). Decoded '
            "values equal the JSON report's to half a unit of their scale; the tables only grow at the end. "
            "Source: agent/core/telemetry_cbor.py."
        ),
        "required": [str(K_SEQ), str(K_TS)],
        "properties": {str(key): schema for key, schema in sorted(_KEY_SCHEMAS.items())},
    }
    batch = {
        "type": "array",
        "minItems": 1,
        "description": (
            "[report, delta, ...]: the first item a full TelemetryCbor report, so a batch reads alone. Each "
            "delta is an array [ts, " + ", ".join(FIX_NAMES) + "] of differences from the previous report (ts, "
            "lat and lon second differences: minus the previous step as well), optionally followed by a map "
            "of the other fields that changed (TelemetryCbor keys; key 0 when seq is not the previous seq + "
            "1). Entries left out at the end are unchanged; null means the field is now null; where the "
            "previous value was null the entry is the value itself."
        ),
        "prefixItems": [{"$ref": "#/components/schemas/TelemetryCbor"}],
        "items": {"type": ["array", "object"]},
    }
    return {"TelemetryCbor": report, "TelemetryCborBatch": batch}
