"""The watchdog measures progress, not liveness: a core caught in an error loop gets restarted.

The real agent process (``python -m agent run``) on a private Mosquitto, with the
sd_notify protocol spoken on a real AF_UNIX datagram socket as systemd does
(``NOTIFY_SOCKET``, ``WATCHDOG_USEC``). The test plays systemd: it reads the
notifications and, on ``WATCHDOG=trigger`` (or missed pings), kills the agent with
SIGABRT, systemd's default watchdog signal, and starts it again. A fault is
injected into the core of the first process only: from the moment a marker file
exists, every event raises, and the loop keeps ticking (the case liveness misses).
"""

from __future__ import annotations

import json
import signal
import textwrap
import time

from hil.agent_proc import AgentProcess
from tests.support.broker import wait_until
from tests.test_agent_e2e import PINS, Rig
from tests.test_sdnotify import receiver  # noqa: F401 - the systemd side, as a fixture

FAULTY_AGENT = textwrap.dedent("""
    import os, sys
    from agent.core.unit import Unit
    handle = Unit.handle
    def broken(self, event, now):
        if os.path.exists(sys.argv[2]):
            raise RuntimeError("injected fault: every event fails")
        return handle(self, event, now)
    Unit.handle = broken
    from agent.cli import main
    sys.exit(main(["run", "--config", sys.argv[1]]))
""")


def test_a_core_stuck_in_an_error_loop_is_restarted_and_keeps_its_state_and_outbox(tmp_path, request, receiver):  # noqa: F811
    rig = Rig(tmp_path)
    request.addfinalizer(rig.down)
    marker = tmp_path / "fault"
    script = tmp_path / "faulty_agent.py"
    script.write_text(FAULTY_AGENT)
    # As systemd starts it: NOTIFY_SOCKET and WATCHDOG_USEC (4 s) in its environment.
    rig.agent = AgentProcess(rig.config_path, tmp_path / "agent.log", f"{{python}} {script} {{config}} {marker}",
                             env={"NOTIFY_SOCKET": receiver.address, "WATCHDOG_USEC": "4000000"}).start()
    proc = rig.agent.proc
    assert receiver.wait_for(lambda m: m.startswith("READY=1"), timeout=30)
    receiver.wait_for(lambda m: m == "WATCHDOG=1", timeout=10)  # healthy: pinging
    rig.gpio.hold(PINS["en_route"], 0.1)
    rig.wait("status", lambda b: b["status"] == "en_route")
    rig.wait("telemetry", lambda b: b["status"] == "en_route")
    state_file = tmp_path / "state" / "unit-state.json"
    wait_until(lambda: state_file.exists() and '"en_route"' in state_file.read_text(), 10, "state stored")
    last_before = max(b["seq"] for b in rig.messages("telemetry"))

    # The fault: the loop goes on ticking (its heartbeat is fine), but nothing gets done.
    marker.write_text("")
    started = time.monotonic()
    seen = receiver.wait_for(lambda m: m.startswith("WATCHDOG=trigger"), timeout=30)
    took = time.monotonic() - started
    trigger = seen[-1]
    assert "no telemetry report" in trigger or "inbox" in trigger, trigger
    assert took < 25, took  # the limits are 10 s; well before WatchdogSec=30s would expire
    # systemd's watchdog action: SIGABRT, then Restart=always.
    proc.send_signal(signal.SIGABRT)
    proc.wait(15)
    marker.unlink()
    faulty_seqs = {b["seq"] for b in rig.messages("telemetry")}
    rig.start_agent()  # Restart=always; waits for the new birth

    # The state survived: still en route; telemetry goes on with new, never reused, seq numbers.
    again = rig.wait("telemetry", lambda b: b["seq"] > max(faulty_seqs), timeout=20)
    assert again["status"] == "en_route"
    seqs = [b["seq"] for b in rig.messages("telemetry")]
    assert len(seqs) == len(set(seqs)), "a seq was reused after the restart"
    assert min(s for s in seqs if s > last_before) > last_before
    assert rig.stop_agent() == 0
    text = (tmp_path / "agent.log").read_text(errors="replace")
    assert text.count("injected fault") < 50, "the error loop flooded the log"
    assert json.loads(state_file.read_text())


def test_a_failed_progress_check_triggers_the_watchdog_once(receiver):  # noqa: F811
    from agent.adapters.sdnotify import HealthCheck, Notifier, Watchdog

    healthy = {"core": True, "gnss": True}
    checks = [HealthCheck("telemetry", lambda: (healthy["core"], "reports"), restart_now=True),
              HealthCheck("gnss reader", lambda: (healthy["gnss"], "reader thread"))]
    dog = Watchdog(Notifier(receiver.address), checks, interval=1.0)
    healthy["gnss"] = False  # a liveness failure: pings withheld, no trigger
    assert not dog.check_once().restart_now
    assert receiver.recv().startswith("STATUS=unhealthy")
    assert receiver.recv(0.3) is None
    healthy["core"] = False
    assert dog.check_once().restart_now
    assert receiver.recv().startswith("WATCHDOG=trigger\nSTATUS=no progress, restarting: telemetry: reports")
    dog.check_once()
    assert receiver.recv(0.3) is None  # asked once
    healthy.update(core=True, gnss=True)
    dog.check_once()
    assert receiver.wait_for(lambda m: m == "WATCHDOG=1")
