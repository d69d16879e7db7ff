"""`umps-hil demo` as a crew, a dispatcher and an admin try it: the process, driven through its prompt.

The demo runs as its own process (the installed ``umps-hil`` script, from a directory that is
not the repository); the test types at its prompt, reads what it prints, and watches the
unit's topics on the demo's broker with a recorder of its own. What the demo prints to type
by hand (the signed ``umps-agent admin ... | mosquitto_pub`` lines) is run by a shell as
printed.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hil.demo import demo_help, vehicle_buttons
from hil.demo_calls import INCIDENTS, LEAD_S, CallPlanner
from hil.peers import BrokerTap
from hil.route import default_route, distance_m
from tests.support.broker import free_port, mosquitto_path

ROOT = Path(__file__).resolve().parents[1]


# ------------------------------------------------------------------ pure parts


def test_each_call_is_its_own_incident_ahead_on_the_route():
    route = default_route()
    planner = CallPlanner(route)
    calls, open_addresses = [], set()
    for route_t in (0.0, 0.0, 5.0, 300.0):
        call = planner.next_call(route_t, 1, open_addresses)
        calls.append(call)
        open_addresses.add(call.address)
        # The vehicle reaches the incident: at its arrival time it is where the incident is.
        there = route.at(route_t + call.eta_s)
        assert distance_m(there.lat, there.lon, call.lat, call.lon) < 15, call
        assert call.eta_s >= LEAD_S  # time to read the call and accept it before arriving
    assert len({c.nature for c in calls}) == len(calls) and len({c.address for c in calls}) == len(calls)
    assert [c.nature for c in calls] == [nature for nature, _ in INCIDENTS[:len(calls)]]
    assert len({c.call_id for c in calls}) == len(calls)


def test_the_help_offers_each_vehicle_its_own_buttons_and_words():
    from agent.config import PanelConfig

    status = PanelConfig().status_buttons
    car, motorcycle = (demo_help(kind, vehicle_buttons(kind, status)) for kind in ("car", "motorcycle"))
    assert "busy" in car and "busy" not in motorcycle
    assert "car's own link" not in car + motorcycle and "the unit's own mobile link" in motorcycle
    for text in (car, motorcycle):
        assert "accept " in text and "decline " in text and "alarm ack | alarm clear" in text
        assert "\n  ack " not in text  # the ambiguous bare word is no longer offered


# ------------------------------------------------------------------ the process


class Demo:
    """``umps-hil demo`` as a process: type a line, wait for what it prints."""

    def __init__(self, tmp: Path, *args: str):
        mosquitto_path()  # skip, not fail, without Mosquitto
        script = Path(sys.executable).parent / "umps-hil"
        argv = [str(script)] if script.exists() else [sys.executable, "-m", "hil.cli"]
        self.ui_port, panel_port = free_port(), free_port()
        env = {**os.environ, "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen(
            [*argv, "demo", "--ui-port", str(self.ui_port), "--panel-port", str(panel_port), "--call-at", "3600",
             "--workdir", str(tmp / "demo"), *args],
            cwd=tmp, env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            bufsize=1)
        self.lines: list[str] = []
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        self.tap: BrokerTap | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()

    @property
    def text(self) -> str:
        with self.cond:
            return "\n".join(self.lines)

    def wait_line(self, pattern: str, timeout: float = 30.0, start: int = 0) -> re.Match:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[start:]:
                    found = re.search(pattern, line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if left <= 0 or self.proc.poll() is not None and not left:
                    raise AssertionError(f"no line matching {pattern!r}; the demo printed:\n{self.text[-4000:]}")
                self.cond.wait(min(left, 0.5))

    def type(self, line: str) -> int:
        """Type ``line`` at the prompt; the index of the next printed line."""
        with self.cond:
            mark = len(self.lines)
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()
        return mark

    def up(self, unit: str) -> BrokerTap:
        self.wait_line(r"Commands \(type one", timeout=90)
        host, port = self.wait_line(r"Broker: +([\d.]+):(\d+)").groups()
        self.tap = BrokerTap(host, int(port), prefix="umps", unit_id=unit).start()
        return self.tap

    def wait(self, topic: str, predicate=lambda body: True, timeout: float = 15.0) -> dict:
        assert self.tap is not None
        found = self.tap.wait_for(lambda ms: [json.loads(m.payload) for m in ms if m.topic == topic and m.payload
                                              and predicate(json.loads(m.payload))], timeout)
        assert found, f"nothing on {topic} matched; the demo printed:\n{self.text[-3000:]}"
        return found[-1]

    def wait_latest(self, topic: str, predicate, timeout: float = 15.0) -> dict:
        """Wait until the newest message on ``topic`` satisfies ``predicate`` (what the unit shows now)."""
        assert self.tap is not None

        def latest(ms) -> dict | None:
            bodies = [json.loads(m.payload) for m in ms if m.topic == topic and m.payload]
            return bodies[-1] if bodies and predicate(bodies[-1]) else None

        found = self.tap.wait_for(latest, timeout)
        assert found, f"the newest {topic} never matched; the demo printed:\n{self.text[-3000:]}"
        return found

    def quit(self) -> int:
        if self.proc.poll() is None:
            self.type("quit")
        try:
            return self.proc.wait(30)
        finally:
            if self.tap is not None:
                self.tap.stop()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.tap is not None:
            self.tap.stop()


def test_a_car_crew_and_a_dispatcher_through_the_demo_prompt(tmp_path, request):
    demo = Demo(tmp_path)
    request.addfinalizer(demo.kill)
    tap = demo.up("KEN-C-01")
    banner = demo.text
    assert re.search(r"Rider panel: +http://127\.0\.0\.1:\d+/", banner) and f":{demo.ui_port}/" in banner
    assert "The unit has no keys" in banner and "--signed" in banner
    assert "busy" in banner  # a car's status buttons

    # Two calls: each its own incident, ahead of the car.
    mark = demo.type("call 1")
    first = demo.wait("call", lambda b: b.get("id") == "C-DEMO-0001")
    printed = demo.wait_line(r"dispatch: C-DEMO-0001 P1 .*: (\d+) m away, about (\d+) s ahead", start=mark)
    assert int(printed.group(2)) >= LEAD_S
    demo.wait("call/response", lambda b: b["id"] == "C-DEMO-0001" and b["response"] == "received")
    demo.type("call 2")
    second = demo.wait("call", lambda b: b.get("id") == "C-DEMO-0002")
    assert (first["nature"], first["address"]) != (second["nature"], second["address"])
    assert first["location"] != second["location"] and first["details"] != second["details"]
    demo.wait("call/response", lambda b: b["id"] == "C-DEMO-0002" and b["response"] == "received")
    # The car drives toward the first incident.
    fixes = lambda: [b["fix"] for m in tap.on("telemetry") if (b := json.loads(m.payload))["fix"]["mode"] >= 2]
    tap.wait_for(lambda ms: len(fixes()) >= 1, 20)
    start = len(fixes())

    # The crew accepts the call shown (the P1), then declines the other one.
    demo.type("accept")
    demo.wait("call/response", lambda b: b["id"] == "C-DEMO-0001" and b["response"] == "accepted")
    demo.wait_latest("status", lambda b: (b.get("call") or {}).get("id") == "C-DEMO-0002")
    time.sleep(1.5)  # a crew reads the call now on screen before answering it
    declined = demo.type("decline")
    demo.wait("call/response", lambda b: b["id"] == "C-DEMO-0002" and b["response"] == "declined")

    # The old bare word still works, and says what it is now.
    mark = demo.type("ack")
    note = demo.wait_line(r"alarm ack", start=mark)
    assert "accept" in note.string
    demo.wait_line(r"dispatch acknowledges the alarm", start=mark)
    # A motorcycle-only refusal does not apply to a car: busy is a car's button.
    mark = demo.type("tap busy")
    demo.wait_line(r"tap busy", start=mark)

    # What the prompt does not know, it says; a priority is 1, 2 or 3.
    mark = demo.type("bogus")
    demo.wait_line(r"unknown command 'bogus'; type help", start=mark)
    mark = demo.type("call 7")
    demo.wait_line(r"the priority is 1, 2 or 3, not '7'", start=mark)
    mark = demo.type("tap")
    demo.wait_line(r"tap: which one\?", start=mark)
    # cancel without an id cancels the call on screen: the accepted one, now the only one open.
    # (once the demo itself has seen the screen change: it prints every status the unit sends)
    demo.wait_line(r'← status .*"call":\{"id":"C-DEMO-0001"', start=declined)
    demo.type("cancel")
    demo.wait("call", lambda b: b.get("id") == "C-DEMO-0001" and b.get("action") == "cancel")

    # The unit ignores a forged signature, and says so.
    tap.publish("cmd", json.dumps({"id": "demo-forged", "command": "report_position", "sig": "Zm9yZ2Vk"}).encode())
    result = demo.wait("cmd/result", lambda b: b.get("id") == "demo-forged")
    assert result["ok"] is True and result["warnings"][0]["loc"] == "sig", result

    # Meanwhile the car got nearer to the first incident.
    def nearer() -> bool:
        seen = fixes()
        if len(seen) <= start:
            return False
        before, now = seen[start - 1], seen[-1]
        spot = first["location"]
        return (distance_m(now["lat"], now["lon"], spot["lat"], spot["lon"])
                < distance_m(before["lat"], before["lon"], spot["lat"], spot["lon"]) - 20)

    assert tap.wait_for(lambda ms: nearer(), 60), "the car did not get nearer to the incident"
    assert demo.quit() == 0
    assert "demo stopped" in demo.text


def test_a_signed_motorcycle_demo_prints_the_signing_lines_that_work(tmp_path, request):
    if shutil.which("mosquitto_pub") is None:
        pytest.skip("mosquitto_pub not installed (Debian package mosquitto-clients)")
    demo = Demo(tmp_path, "--kind", "motorcycle", "--signed")
    request.addfinalizer(demo.kill)
    tap = demo.up("KEN-M-07")
    banner = demo.text
    admin_key = Path(demo.wait_line(r"Admin key: +(\S+)").group(1))
    assert admin_key.exists() and Path(demo.wait_line(r"Dispatch key: +(\S+)").group(1)).exists()
    help_text = banner[banner.index("Commands (type one"):]
    assert "busy" not in help_text and not re.search(r"\bcar\b", help_text), help_text

    # The demo's own call is signed with the dispatch key: the unit takes it (once it can judge
    # the signature's expiry: this machine's clock may not be synchronised, the GNSS time is).
    demo.wait("status", lambda b: b.get("time_source") in ("gnss", "system"), timeout=30)
    demo.type("call 1")
    demo.wait("call/response", lambda b: b["id"] == "C-DEMO-0001" and b["response"] == "received")
    # An unsigned command is refused by this unit...
    tap.publish("cmd", json.dumps({"id": "unsigned-1", "command": "report_position"}).encode())
    refused = demo.wait("cmd/result", lambda b: b.get("id") == "unsigned-1")
    assert refused["ok"] is False and {e["loc"] for e in refused["errors"]} & {"sig", "expires"}, refused
    # ... and the printed signed command, run as printed, is carried out.
    line = next(ln.strip() for ln in demo.lines if "admin sign-cmd" in ln)
    done = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = demo.wait("cmd/result", lambda b: b.get("ok") is True and b.get("command") == "report_position")
    assert "warnings" not in result
    # So is the printed signed config push.
    line = next(ln.strip() for ln in demo.lines if "admin sign --key" in ln)
    done = subprocess.run(["bash", "-c", line], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert demo.wait("config/result", lambda b: b.get("version") == 1)["ok"] is True

    # The rider raises the alarm; dispatch acknowledges it with the printed signed lines.
    demo.type("hold emergency 2.5")
    demo.wait("alarm", lambda b: b.get("active") is True)
    lines = [ln.strip() for ln in demo.lines]
    lookup = next(ln for ln in lines if ln.startswith("ALARM=$("))
    ack = next(ln for ln in lines if "alarm/ack --alarm-id" in ln)
    done = subprocess.run(["bash", "-c", f"{lookup}\n{ack}"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    demo.wait("alarm", lambda b: b.get("state") == "acknowledged")

    # A motorcycle has no busy button, and the prompt says so.
    mark = demo.type("tap busy")
    assert "out_of_service" in demo.wait_line(r"a motorcycle has no 'busy' button", start=mark).string
    # The panel's decline button is wired: the rider declines the call shown.
    demo.type("call 2")
    demo.wait("call/response", lambda b: b["id"] == "C-DEMO-0002" and b["response"] == "received")
    demo.type("decline")
    declined = demo.wait("call/response", lambda b: b["response"] == "declined")
    assert declined["id"] == "C-DEMO-0001"  # the call on the rider's screen: the most urgent one
    assert demo.quit() == 0
