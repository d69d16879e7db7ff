"""CBOR telemetry: every report, alone or in a backlog batch, decodes to the fields of its JSON twin."""

from __future__ import annotations

import datetime as dt
import json
import random
from pathlib import Path
from typing import Any

import cbor2
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agent.config import STATUS_CODES
from agent.core.dispatch import _ORDER
from agent.core.events import Fix, FixReceived
from agent.core.telemetry_cbor import (
    CALL_STATE_TABLE, RECEIVER_TABLE, RESOLUTION, STATUS_TABLE, TelemetryDecodeError, decode_telemetry, encode_batch, encode_report,
    is_batch, is_cbor,
)
from tests.support.unit_rig import T0, Rig, call_payload, config, pubs, wall

UNIT = "KEN-M-07"


def assert_twin(decoded: dict[str, Any], twin: dict[str, Any]) -> None:
    """Same fields and values; scaled fields within half a unit of their scale."""
    assert set(decoded) == set(twin), set(decoded) ^ set(twin)
    for key, value in twin.items():
        if key != "fix":
            assert decoded[key] == value, (key, decoded[key], value)
    assert set(decoded["fix"]) == set(twin["fix"])
    for key, value in twin["fix"].items():
        got = decoded["fix"][key]
        if key in RESOLUTION and value is not None:
            assert got is not None and abs(got - value) <= RESOLUTION[key] + 1e-9, (key, got, value)
        else:
            assert got == value, (key, got, value)


def _shift(encoding: str, seed: int) -> list[bytes]:
    """A patrol of a few minutes through the core: moving, a call, siren, a tunnel, clocks changing."""
    rng = random.Random(seed)
    rig = Rig(config("motorcycle", telemetry={"encoding": encoding}), next_seq=70_000)
    lat, lon, alt, speed, track = 34.2610123, -6.5802111, 12.5, 0.0, 271.0
    for k in range(1, 240):
        t = T0 + k
        if k == 20:
            rig.at(t - 0.5).message("call", call_payload(id="C-2026-004217"))
        if k == 25:
            rig.at(t - 0.4).tap("ack")
        if k == 30:
            rig.at(t - 0.4).siren(True)
        if k == 90:
            rig.at(t - 0.4).siren(False)
        if k == 120:
            rig.synced = False  # time from the receiver from now on
        if 150 <= k < 170:  # a tunnel: no fix, the position ages
            rig.at(t).tick()
            continue
        speed = max(0.0, speed + rng.uniform(-1.2, 1.5))
        track = (track + rng.uniform(-8, 8)) % 360
        lat += speed * 9e-6 * rng.uniform(0.8, 1.2)
        lon += speed * 4e-6 * rng.uniform(0.8, 1.2)
        alt += rng.choice((-0.1, 0.0, 0.1))
        stamp = wall(t)
        fix = Fix(mode=rng.choice((3, 3, 3, 2)), time=stamp.time(), date=stamp.date() if k > 5 else None,
                  lat=round(lat, 9), lon=round(lon, 9), alt=round(alt, 1), speed=speed, track=round(track, 2),
                  hdop=rng.choice((0.8, 0.9, 1.27, 2.5)), sats=rng.randint(4, 14))
        rig.at(t).send(FixReceived(fix, t))
        rig.tick()
    return [p.payload for p in pubs(rig.log, "telemetry")]


@pytest.mark.parametrize("seed", [1, 2])
def test_every_report_of_a_shift_decodes_to_its_json_twin(seed: int) -> None:
    twins = [json.loads(p) for p in _shift("json", seed)]
    compact = _shift("cbor", seed)
    assert len(compact) == len(twins) > 200
    assert all(is_cbor(p) and not is_batch(p) for p in compact)
    # What the shift went through, so the comparison covers it.
    assert {t["call"]["state"] for t in twins if t["call"]} >= {"received", "accepted"}
    assert {t["siren"] for t in twins} == {True, False}
    assert {t["time_source"] for t in twins} >= {"system", "gnss"}
    assert {t["fix"]["receiver"] for t in twins} >= {"ok", "no_fix"}
    assert any(t["fix"]["mode"] == 1 and t["fix"]["lat"] is not None for t in twins)  # the tunnel
    assert any(t["fix"]["time"] and "T" not in t["fix"]["time"] for t in twins)  # no date yet
    for payload, twin in zip(compact, twins):
        (decoded,) = decode_telemetry(payload, f"umps/{UNIT}/telemetry")
        assert_twin(decoded, twin)
    # The same reports in backlog batches: all of them, in order, with the same fields.
    for start in range(0, len(compact), 64):
        batch = encode_batch(compact[start:start + 64])
        assert is_batch(batch)
        decoded = decode_telemetry(batch, f"umps/{UNIT}/telemetry/backlog")
        assert len(decoded) == len(twins[start:start + 64])
        for got, twin in zip(decoded, twins[start:start + 64]):
            assert_twin(got, twin)


def test_sizes_meet_the_cellular_goals() -> None:
    """A live report under 50 bytes of payload (60 with its PUBLISH framing); batches under 20 a report."""
    twins, compact = _shift("json", 3), _shift("cbor", 3)
    moving = [c for c, t in zip(compact, map(json.loads, twins))
              if t["call"] is None and not t["siren"] and "T" in (t["fix"]["time"] or "T")]  # dated fixes
    assert len(moving) > 10
    assert max(len(p) for p in moving) <= 50, sorted(len(p) for p in moving)[-5:]
    batch = encode_batch(compact[100:164])
    assert len(batch) / 64 <= 20, len(batch) / 64


def test_a_seq_gap_and_a_field_set_back_to_its_default_survive_a_batch() -> None:
    base = {"unit": UNIT, "seq": 10, "ts": "2026-12-03T10:00:00.000Z", "time_source": "gnss",
            "fix": {"mode": 3, "time": "2026-12-03T09:59:59.990Z", "lat": 34.1, "lon": -6.5, "alt": 10.0,
                    "speed": 3.0, "track": 90.0, "hdop": 0.9, "sats": 7, "age": 0.01},
            "status": "on_scene", "siren": True, "emergency": True, "call": {"id": "C-1", "state": "on_scene"},
            "ignition": "on"}
    base["fix"]["receiver"] = "ok"
    later = json.loads(json.dumps(base))
    later.update(seq=15, ts="2026-12-03T10:00:05.000Z", time_source="system", siren=False, emergency=False, call=None,
                 status="available", ignition=None)
    later["fix"].update(mode=1, speed=None, track=None, time="2026-12-03T10:00:04.990Z", receiver="lost")
    decoded = decode_telemetry(encode_batch([encode_report(base), encode_report(later)]), unit=UNIT)
    assert_twin(decoded[0], base)
    assert_twin(decoded[1], later)


def test_fields_the_key_map_does_not_know_are_carried_by_name() -> None:
    """A field added to the JSON report reaches a CBOR consumer before it gets a small key."""
    body = {"unit": UNIT, "seq": 1, "ts": "2026-12-03T10:00:00.000Z", "time_source": "system",
            "fix": {"mode": 3, "time": None, "lat": 34.0, "lon": -6.0, "alt": None, "speed": None, "track": None,
                    "hdop": None, "sats": None, "age": 0.0, "quality": "rtk", "receiver": "no_fix"},
            "status": "available", "siren": False, "emergency": False, "call": None, "odometer_km": 12034,
            "ignition": "off"}
    (decoded,) = decode_telemetry(encode_report(body), unit=UNIT)
    assert_twin(decoded, body)
    (batched, again) = decode_telemetry(encode_batch([encode_report(body)] * 2), unit=UNIT)
    assert_twin(batched, body) and again["odometer_km"] == 12034


def test_wire_tables_cover_every_status_and_call_state() -> None:
    assert set(STATUS_CODES) <= set(STATUS_TABLE)
    assert set(_ORDER) <= set(CALL_STATE_TABLE)


@pytest.mark.parametrize("payload", [b"", b"\xff\xff", b"[1, 2]", b"\x81\x01", cbor2.dumps({0: "x"}), b"\xa1\x00",
                                     cbor2.dumps([{0: 1, 1: 2}, "not a delta"]), b"\x9f" * 2000])
def test_garbage_is_a_clear_error(payload: bytes) -> None:
    with pytest.raises(TelemetryDecodeError):
        decode_telemetry(payload)


_coord = st.one_of(st.none(), st.floats(-179.9999999, 179.9999999).map(lambda v: round(v, 7)))
_fix = st.fixed_dictionaries({
    "mode": st.integers(1, 3),
    "time": st.one_of(st.none(), st.integers(-5000, 0)),
    "lat": _coord, "lon": _coord,
    "alt": st.one_of(st.none(), st.floats(-400, 9000).map(lambda v: round(v, 1))),
    "speed": st.one_of(st.none(), st.floats(0, 90).map(lambda v: round(v, 2))),
    "track": st.one_of(st.none(), st.floats(0, 359.99).map(lambda v: round(v, 2))),
    "hdop": st.one_of(st.none(), st.floats(0.5, 99).map(lambda v: round(v, 2))),
    "sats": st.one_of(st.none(), st.integers(0, 64)),
    "age": st.one_of(st.none(), st.integers(0, 10**6).map(lambda v: v / 1000)),
    "receiver": st.sampled_from(RECEIVER_TABLE),
})
_report = st.fixed_dictionaries({
    "seq": st.integers(0, 2**40), "ts": st.integers(1.6e12, 2.5e12), "time_source": st.sampled_from(
        ("system", "gnss", "system_unsynced")),
    "fix": _fix, "status": st.sampled_from(STATUS_CODES), "siren": st.booleans(), "emergency": st.booleans(),
    "ignition": st.sampled_from(("on", "off", None)),
    "call": st.one_of(st.none(), st.fixed_dictionaries({"id": st.text(min_size=1, max_size=40),
                                                        "state": st.sampled_from(CALL_STATE_TABLE[:5])})),
})


def _iso_ms(ms: int) -> str:
    stamp = dt.datetime.fromtimestamp(ms // 1000, dt.timezone.utc)
    return stamp.strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"


def _body(r: dict[str, Any]) -> dict[str, Any]:
    body = {"unit": UNIT, **r, "ts": _iso_ms(r["ts"]), "fix": dict(r["fix"])}
    if body["fix"]["time"] is not None:
        body["fix"]["time"] = _iso_ms(r["ts"] + r["fix"]["time"])
    return body


@settings(max_examples=150, deadline=None)
@given(st.lists(_report, min_size=1, max_size=12))
def test_any_reports_decode_to_their_twins_alone_and_in_a_batch(reports: list[dict[str, Any]]) -> None:
    bodies = [_body(r) for r in reports]
    payloads = [encode_report(b) for b in bodies]
    for payload, twin in zip(payloads, bodies):
        assert_twin(decode_telemetry(payload, unit=UNIT)[0], twin)
    decoded = decode_telemetry(encode_batch(payloads), unit=UNIT)
    assert len(decoded) == len(bodies)
    for got, twin in zip(decoded, bodies):
        assert_twin(got, twin)


def test_asyncapi_describes_the_key_map_and_its_example_decodes_to_the_json_example() -> None:
    """The schema (generated from the codec, see test_messages) names the keys the encoder uses."""
    from agent.core import telemetry_cbor as tc

    doc = json.loads((Path(__file__).parents[1] / "docs" / "asyncapi.json").read_text(encoding="utf-8"))
    schemas, messages = doc["components"]["schemas"], doc["components"]["messages"]
    props = schemas["TelemetryCbor"]["properties"]
    keys = {"seq": tc.K_SEQ, "ts": tc.K_TS, "fix": tc.K_FIX, **tc._SLOW_KEYS}
    assert {int(k): v["x-field"] for k, v in props.items()} == {v: k for k, v in keys.items()}
    example = bytes.fromhex(messages["telemetryCbor"]["examples"][0]["payload"])
    (decoded,) = decode_telemetry(example, "umps/KEN-M-07/telemetry")
    assert_twin(decoded, messages["telemetry"]["examples"][0]["payload"])


def test_a_remote_push_switches_the_encoding_at_the_next_report() -> None:
    """``[telemetry]`` is applied live: a fleet admin can move units to CBOR without a restart."""
    rig = Rig(config("motorcycle"), next_seq=5)
    before = pubs(rig.run_until(T0 + 2.5), "telemetry")
    rig.unit.reconfigure(config("motorcycle", telemetry={"encoding": "cbor"}), rig.now())
    after = pubs(rig.run_until(T0 + 4.5), "telemetry")
    assert before and after and not any(is_cbor(p.payload) for p in before)
    assert all(is_cbor(p.payload) for p in after)
    assert [r["seq"] for p in after for r in decode_telemetry(p.payload, unit=UNIT)] == [p.seq for p in after]
    assert after[0].seq == before[-1].seq + 1


def test_decode_command_reads_a_hex_payload_and_a_capture_and_counts_what_it_skips() -> None:
    import io

    from agent.telemetry_tools import decode

    payloads = _shift("cbor", 4)[:70]
    out, err = io.StringIO(), io.StringIO()
    assert decode(payloads[0].hex().encode(), out, err, hex_text=True, unit=UNIT) == 0
    assert json.loads(out.getvalue())["seq"] == 70_000
    json_report = b'{"seq": 1}'.hex()
    capture = (f"umps/{UNIT}/telemetry {payloads[1].hex()}\n"
               f"umps/{UNIT}/telemetry/backlog {encode_batch(payloads[2:66]).hex()}\n"
               "# a comment\n"
               f"umps/{UNIT}/telemetry zz-not-hex\n"
               f"umps/{UNIT}/telemetry {json_report}\n").encode()
    out, err = io.StringIO(), io.StringIO()
    assert decode(capture, out, err) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [r["seq"] for r in lines[:65]] == list(range(70_001, 70_066))
    assert all(r["unit"] == UNIT for r in lines[:65])
    assert "3 payloads, 66 reports, 1 lines skipped" in err.getvalue()
    out, err = io.StringIO(), io.StringIO()
    assert decode(b"\x00garbage", out, err) == 1 and "nor a capture" in err.getvalue()
