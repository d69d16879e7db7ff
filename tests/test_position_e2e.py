"""Dispatch never loses the position: black-box, against the real agent process.

The unit drives with a fix, enters a garage (the emulated receiver keeps
talking, without a position), then loses its power and starts again there. Its
reports, and the touchscreen's way to a call, still say where it was, when and
how long ago (the rig of tests/test_agent_e2e.py).
"""

from __future__ import annotations

import json
import urllib.request

from hil.gnss_faults import Fault
from tests.support.broker import free_port
from tests.test_agent_e2e import Rig


def _snapshot(port: int) -> dict:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/snapshot", timeout=5) as reply:
        return json.loads(reply.read())


def test_after_a_power_cut_in_a_garage_the_unit_reports_where_it_was_with_the_fix_time_and_age(tmp_path, request):
    ui_port = free_port()
    rig = Rig(tmp_path, ui_port=ui_port)
    request.addfinalizer(rig.down)
    rig.start_agent()
    rig.wait("telemetry", lambda b: b["fix"]["mode"] >= 2, timeout=20)
    rig.gnss.inject(Fault("fix_lost"))  # the garage: the receiver talks, no position
    inside = rig.wait("telemetry", lambda b: b["fix"]["receiver"] == "no_fix" and (b["fix"]["age"] or 0) >= 6, timeout=20)
    last = inside["fix"]
    assert last["lat"] is not None and last["mode"] == 1

    rig.agent.proc.kill()  # the power goes, in the garage
    rig.agent.proc.wait(10)
    rig.start_agent()
    after = rig.wait("telemetry", lambda b: b["seq"] > inside["seq"], timeout=20)["fix"]
    assert (after["lat"], after["lon"], after["time"]) == (last["lat"], last["lon"], last["time"])
    assert after["mode"] == 1 and after["receiver"] == "no_fix" and after["age"] >= last["age"]

    # A call: the touchscreen keeps the way to it, from where the unit was, marked with its age.
    call = {"id": "C-7", "action": "new", "priority": 1, "nature": "Vol", "address": "Marché central",
            "location": {"lat": last["lat"] + 0.01, "lon": last["lon"]}, "created": "2026-11-25T10:00:00Z"}
    rig.publish("call", json.dumps(call).encode())
    rig.wait("call/response", lambda b: b["id"] == "C-7" and b["response"] == "received")
    shown = _snapshot(ui_port)["call"]
    assert 1000 < shown["distance_m"] < 1300 and min(shown["bearing_deg"], 360 - shown["bearing_deg"]) < 1  # due north
    assert shown["position_age_s"] >= last["age"]
