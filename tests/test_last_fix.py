"""The last known fix across restarts (agent/core/last_fix.py, agent/adapters/last_fix_store.py).

The rule and the age are pure; the keeper runs on a real state directory (and
a small tmpfs for the full card) with the core unit of tests/support/unit_rig.py.
"""

from __future__ import annotations

import datetime as dt

import pytest

from agent.adapters.last_fix_store import FILE_NAME, LastFixKeeper, LastFixStore
from agent.core import last_fix
from agent.core.last_fix import MIN_GAP_S, STORE_EVERY_S, StoreRule
from agent.core.unit import Unit
from tests.support.disk import fill, small_tmpfs
from tests.support.unit_rig import T0, Rig, config, gnss_fix, now, wall


def test_the_rule_stores_the_first_fix_a_lost_one_at_once_and_a_moving_one_now_and_then():
    rule = StoreRule()
    a = gnss_fix(T0)
    assert rule.due(a, True, T0)  # the first of this run
    rule.done(a, T0)
    assert not rule.due(a, True, T0 + 500)  # the same fix: nothing new
    near = gnss_fix(T0 + 60, lat=34.2612)  # 20 m on
    assert not rule.due(near, True, T0 + 60)
    assert not rule.due(near, True, T0 + STORE_EVERY_S + 1)  # time enough, but it barely moved
    far = gnss_fix(T0 + 60, lat=34.2650)  # 440 m on
    assert not rule.due(far, True, T0 + 60)  # moved, but not STORE_EVERY_S yet: the card's budget
    assert rule.due(far, True, T0 + STORE_EVERY_S + 1)
    # The fix goes (a tunnel, a garage): the last one is stored at once, but never twice in MIN_GAP_S.
    assert not rule.due(near, False, T0 + MIN_GAP_S - 1)
    assert rule.due(near, False, T0 + MIN_GAP_S)
    assert rule.due(near, False, T0 + 1, stopping=True)  # and at a clean stop


def test_a_record_reads_back_and_a_damaged_one_is_refused():
    fix = gnss_fix(T0)
    data = last_fix.record(fix, wall(T0), T0, "boot-1")
    assert last_fix.from_record(data) == (fix, wall(T0))
    for broken in ({**data, "lat": 91}, {**data, "format": 9}, {k: v for k, v in data.items() if k != "lat"},
                   {**data, "mode": 1, "lat": None}, {**data, "utc": "yesterday"}):
        with pytest.raises(ValueError):
            last_fix.from_record(broken)


def test_its_age_is_exact_within_a_boot_and_never_too_small_after_a_reboot():
    data = last_fix.record(gnss_fix(T0), wall(T0), T0, "boot-1")
    utc = wall(T0)
    assert last_fix.age_after_restart(data, utc, boot="boot-1", mono=T0 + 40, now_utc=wall(T0 + 40)) == 40
    # Another boot, a clock set right: the clock says it.
    assert last_fix.age_after_restart(data, utc, boot="boot-2", mono=20, now_utc=wall(T0) + dt.timedelta(hours=2)) == 7200
    # Another boot, the clock set back to an old time (no battery clock, no NTP): at least the uptime.
    assert last_fix.age_after_restart(data, utc, boot="boot-2", mono=20, now_utc=wall(T0) - dt.timedelta(days=300)) == 20


def _unit(t: float) -> Unit:
    return Rig(t0=t).unit


def test_a_restart_without_a_fix_reports_where_the_unit_was_its_time_its_age_and_why(tmp_path):
    rig = Rig()
    keeper = LastFixKeeper(LastFixStore(tmp_path / "state", tmp_path / "run"), boot="boot-1")
    rig.fix(lat=34.2700, lon=-6.5900)
    keeper.keep(rig.unit, rig.now())
    rig.after(10).tick()  # the fix is gone: a garage
    keeper.keep(rig.unit, rig.now(), stopping=True)

    unit = _unit(T0 + 30)  # the agent restarted 30 s after the fix, still in the garage
    LastFixKeeper(LastFixStore(tmp_path / "state", tmp_path / "run"), boot="boot-1").restore(unit, now(T0 + 30))
    fix = unit.fix(now(T0 + 30))
    assert (fix["lat"], fix["lon"], fix["mode"], fix["receiver"]) == (34.27, -6.59, 1, "no_fix")
    assert fix["age"] == 30 and fix["time"] == gnss_fix(T0).iso_time()
    report = unit.report(now(T0 + 31))  # every report, until a new fix comes, says so too
    assert b'"lat":34.27' in report.payload and b'"age":31.0' in report.payload


def test_a_new_fix_replaces_the_restored_one_and_a_damaged_record_means_none(tmp_path):
    store = LastFixStore(tmp_path)
    store.save(last_fix.record(gnss_fix(T0), wall(T0), T0, None))
    rig = Rig(t0=T0 + 100)
    LastFixKeeper(store).restore(rig.unit, rig.now())
    # No boot id: the clock says 100 s, but this boot is 200 s old (monotonic) and the fix is older.
    assert rig.unit.fix(rig.now())["age"] == 200
    rig.fix(lat=34.30)
    assert rig.unit.fix(rig.now())["lat"] == 34.30 and rig.unit.fix(rig.now())["age"] == 0

    (tmp_path / FILE_NAME).write_bytes(b"\xff" * 8192)  # nothing valid in it: set aside, kept
    unit = _unit(T0)
    LastFixKeeper(LastFixStore(tmp_path)).restore(unit, now(T0))
    assert unit.fix(now(T0))["lat"] is None and (tmp_path / (FILE_NAME + ".bad")).exists()


def test_a_full_card_still_takes_the_last_fix(tmp_path):
    with small_tmpfs(tmp_path / "card", "512k") as card:
        rig = Rig()
        keeper = LastFixKeeper(LastFixStore(card), boot="boot-1")
        rig.fix()
        keeper.keep(rig.unit, rig.now())  # made while the card had room
        fill(card)
        rig.after(STORE_EVERY_S + 1).fix(lat=34.29)
        rig.after(MIN_GAP_S).tick()  # lost
        keeper.keep(rig.unit, rig.now())
        unit = _unit(rig.t + 5)
        LastFixKeeper(LastFixStore(card), boot="boot-1").restore(unit, now(rig.t + 5))
        assert unit.fix(now(rig.t + 5))["lat"] == 34.29
