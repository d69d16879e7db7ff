"""The live status report behind `umps-agent status`: its content, its file, the disk check."""

import json
from pathlib import Path

from agent.status_report import STATUS_FILE, DiskCheck, agent_alive, build_report, status_line, write_status_file
from tests.support.blocks import blocks_left_by
from tests.support.unit_rig import T0, Rig

TOP_LEVEL = {
    "unit", "version", "pid", "pid_start", "boot_id", "config", "uptime_s", "written", "link", "outbox", "gnss", "status", "ignition",
    "parked", "siren", "emergency", "call", "seq", "config_version", "panel", "inbox_dropped", "core_errors",
    "outputs", "counters", "storage",
}


def _report(rig: Rig, **overrides):
    args = dict(unit=rig.unit, config=rig.unit.config, config_path=Path("agent.toml"), config_version=3,
                started_mono=T0, link=None, outbox=None, gnss=None, disk_ok=True, panel=False, inbox_dropped=0,
                core_errors=0, outputs={})
    return build_report(rig.now(), **{**args, **overrides})


def test_report_says_what_the_unit_knows_without_any_adapter():
    rig = Rig()
    rig.run_until(T0 + 3.5, fixes=[T0 + k + 0.37 for k in range(3)])
    report = _report(rig)
    assert set(report) == TOP_LEVEL
    assert report["gnss"]["state"] == "fix" and report["gnss"]["mode"] == 3
    assert report["gnss"]["age"] == rig.unit.fix(rig.now())["age"]
    assert report["link"] == {"online": False, "broker": None, "connects": 0, "drops": 0}
    assert report["outbox"] == {"dropped": 0, "disk_ok": True}
    assert report["seq"] == rig.unit.next_seq - 1 and report["config_version"] == 3
    assert report["uptime_s"] == 3.5
    assert report["storage"] == {"durable": True, "reason": None, "stores": {}}
    assert report["gnss"]["port"] == rig.unit.config.gnss.port  # gnss watch leaves that port to the agent
    assert agent_alive(report) is True  # this very process wrote it
    json.dumps(report)  # the file holds it as JSON


def test_status_line_for_systemd():
    rig = Rig()
    assert status_line(rig.unit, backlog=4, mono=rig.t) == "offline, fix none, backlog 4, status available, emergency none"


def test_status_file_is_replaced_whole(tmp_path):
    directory = tmp_path / "run"  # made when missing
    write_status_file(directory, {"unit": "KEN-M-07", "call": "حادث"})
    write_status_file(directory, {"unit": "KEN-M-07", "call": None})
    assert json.loads((directory / STATUS_FILE).read_text()) == {"unit": "KEN-M-07", "call": None}
    assert sorted(p.name for p in directory.iterdir()) == [STATUS_FILE]


def test_disk_check_trusts_the_outbox_while_all_is_well(tmp_path):
    recommits = []
    check = DiskCheck()
    assert check.ok(0.0, tmp_path, outbox_ok=True, state_file_ok=True, recommit=lambda: recommits.append(1))
    assert recommits == [] and not (tmp_path / ".disk-probe").exists()


def test_disk_check_probes_once_a_second_and_lets_the_outbox_commit_again(tmp_path):
    recommits = []
    check = DiskCheck()
    ok = check.ok(10.0, tmp_path, outbox_ok=False, state_file_ok=True, recommit=lambda: recommits.append(1))
    assert ok is True and recommits == [1]  # the directory takes writes again: the outbox may commit
    check.ok(10.5, tmp_path, outbox_ok=False, state_file_ok=True, recommit=lambda: recommits.append(1))
    assert recommits == [1]  # within the second: the last probe's answer
    check.ok(11.0, tmp_path, outbox_ok=False, state_file_ok=True, recommit=lambda: recommits.append(1))
    assert recommits == [1, 1]
    assert not (tmp_path / ".disk-probe").exists()


def test_disk_check_says_no_for_a_directory_that_takes_no_writes(tmp_path):
    recommits = []
    check = DiskCheck()
    gone = tmp_path / "unmounted"
    assert check.ok(0.0, gone, outbox_ok=True, state_file_ok=True, recommit=lambda: recommits.append(1)) is False
    assert recommits == []
    # A failed state file write makes it probe: the directory takes writes again, so yes.
    assert check.ok(5.0, tmp_path, outbox_ok=True, state_file_ok=False, recommit=lambda: recommits.append(1)) is True
    assert recommits == []  # the outbox was fine: nothing to commit again


def test_writing_the_report_every_second_leaves_nothing_behind_in_the_interpreter():
    """The report is built each second for as long as the unit runs: it must not creep.

    dataclasses.asdict() builds a tuple of the fields from a generator, which parks
    one tuple on the interpreter's free lists each time (2,000 per size); the flat
    counters are read with vars() instead.
    """
    rig = Rig()
    rig.run_until(T0 + 3.5, fixes=[T0 + k + 0.37 for k in range(3)])
    _report(rig)  # what the first report fills once
    assert blocks_left_by(lambda _i: _report(rig), 4_000) < 500
