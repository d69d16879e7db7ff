"""The officer-in-danger alarm: hold, cancel window, dispatch ack and clear, restarts."""

from __future__ import annotations

import json

import pytest

from agent.core.emergency import (
    AlarmAcknowledged,
    AlarmActivated,
    AlarmCancelled,
    AlarmCleared,
    AlarmRaised,
    AlarmRestored,
    CancelRefused,
    Emergency,
    EmergencyState as S,
    HoldAborted,
    HoldStarted,
)
from agent.adapters.alarm_ids import random_alarm_id
from tests.support.unit_rig import alarm_ids, alarm_uuid

T0 = 1000.0
A1, A2 = alarm_uuid(1), alarm_uuid(2)  # the first two ids a counted source gives


def emergency(hold_s=2.0, cancel_s=5.0, ids=None) -> Emergency:
    """An Emergency whose ids are counted (a unit's are random: agent.adapters.alarm_ids)."""
    return Emergency(hold_s, cancel_s, new_id=ids or alarm_ids())


def kinds(events):
    return [type(e) for e in events]


def raised(hold_s=2.0, cancel_s=5.0) -> Emergency:
    """An alarm held to completion at T0 + hold_s (PENDING)."""
    em = emergency(hold_s, cancel_s)
    em.press(T0)
    assert kinds(em.tick(T0 + hold_s)) == [AlarmRaised]
    return em


def active(hold_s=2.0, cancel_s=5.0) -> Emergency:
    em = raised(hold_s, cancel_s)
    assert kinds(em.tick(T0 + hold_s + cancel_s)) == [AlarmActivated]
    return em


# ------------------------------------------------------------------ the hold


def test_a_bump_raises_nothing():
    em = emergency(2.0, 5.0)
    started = em.press(T0)
    assert kinds(started) == [HoldStarted] and started[0].raise_at == T0 + 2.0
    assert em.state is S.HOLDING and not em.alarm_out
    assert em.tick(T0 + 1.99) == []
    aborted = em.release(T0 + 1.99)
    assert kinds(aborted) == [HoldAborted]
    assert aborted[0].held_s == pytest.approx(1.99)
    assert em.state is S.NONE and em.next_deadline() is None and em.alarm_id is None
    assert em.tick(T0 + 100) == []


def test_holding_for_hold_s_raises_the_alarm_pending():
    em = emergency(2.0, 5.0)
    em.press(T0)
    assert em.next_deadline() == T0 + 2.0
    events = em.tick(T0 + 2.0)
    assert kinds(events) == [AlarmRaised]
    ev = events[0]
    assert (ev.at, ev.state, ev.alarm_id, ev.cancel_until) == (T0 + 2.0, S.PENDING, A1, T0 + 7.0)
    assert em.state is S.PENDING and em.alarm_out and em.cancellable
    assert em.next_deadline() == T0 + 7.0
    # Letting go after the alarm went out changes nothing.
    assert em.release(T0 + 3.0) == []
    assert em.state is S.PENDING


def test_a_late_release_still_raises_and_the_event_carries_the_deadline_time():
    em = emergency(2.0, 5.0)
    em.press(T0)
    # No tick came in time; the release at 2.5 s applies the deadline first.
    events = em.release(T0 + 2.5)
    assert kinds(events) == [AlarmRaised]
    assert events[0].at == T0 + 2.0 and events[0].cancel_until == T0 + 7.0
    assert em.state is S.PENDING


def test_a_very_late_tick_applies_both_deadlines_in_order():
    em = emergency(2.0, 5.0)
    em.press(T0)
    events = em.tick(T0 + 60)
    assert kinds(events) == [AlarmRaised, AlarmActivated]
    assert [e.at for e in events] == [T0 + 2.0, T0 + 7.0]
    assert em.state is S.ACTIVE and em.next_deadline() is None


def test_a_second_press_while_holding_does_not_restart_the_hold():
    em = emergency(2.0, 5.0)
    em.press(T0)
    assert em.press(T0 + 1.0) == []  # e.g. touch and panel at once
    assert em.next_deadline() == T0 + 2.0


# --------------------------------------------------------------- the window


def test_cancel_inside_the_window():
    em = raised()
    events = em.cancel(T0 + 6.9)
    assert kinds(events) == [AlarmCancelled]
    assert events[0].alarm_id == A1 and events[0].state is S.NONE
    assert em.state is S.NONE and not em.alarm_out and em.next_deadline() is None
    assert em.tick(T0 + 100) == []


def test_the_window_expires_into_active_and_then_cancel_is_refused():
    em = raised()
    assert em.tick(T0 + 6.99) == []
    events = em.tick(T0 + 7.0)
    assert kinds(events) == [AlarmActivated] and events[0].at == T0 + 7.0
    assert em.state is S.ACTIVE and not em.cancellable
    refused = em.cancel(T0 + 8.0)
    assert kinds(refused) == [CancelRefused]
    assert em.state is S.ACTIVE


def test_a_cancel_arriving_after_the_window_without_a_tick_is_refused():
    em = raised()
    events = em.cancel(T0 + 7.5)
    assert kinds(events) == [AlarmActivated, CancelRefused]
    assert em.state is S.ACTIVE


def test_pressing_emergency_again_never_withdraws_the_alarm():
    em = raised()
    for t in (T0 + 2.5, T0 + 3.0, T0 + 3.5):
        assert em.press(t) == []
        assert em.release(t + 0.1) == []
    assert em.state is S.PENDING
    em.tick(T0 + 7.0)
    assert em.press(T0 + 8.0) == [] and em.release(T0 + 20.0) == []
    assert em.state is S.ACTIVE and em.alarm_id == A1


def test_no_cancel_window_goes_straight_to_active():
    em = emergency(2.0, 0.0)
    em.press(T0)
    events = em.tick(T0 + 2.0)
    assert kinds(events) == [AlarmRaised, AlarmActivated]
    assert events[0].cancel_until == T0 + 2.0
    assert em.state is S.ACTIVE


def test_cancel_with_no_alarm_does_nothing():
    em = emergency()
    assert em.cancel(T0) == []
    em.press(T0)
    assert em.cancel(T0 + 1) == []
    assert em.state is S.HOLDING


# ----------------------------------------------------------------- dispatch


def test_dispatch_ack_then_clear():
    em = active()
    ack = em.dispatch_ack(T0 + 30)
    assert kinds(ack) == [AlarmAcknowledged] and ack[0].alarm_id == A1
    assert em.state is S.ACKNOWLEDGED and em.alarm_out
    assert em.dispatch_ack(T0 + 31) == []  # twice is once
    assert kinds(em.cancel(T0 + 32)) == [CancelRefused]
    clear = em.dispatch_clear(T0 + 60)
    assert kinds(clear) == [AlarmCleared] and clear[0].alarm_id == A1
    assert em.state is S.NONE and not em.alarm_out


def test_dispatch_ack_inside_the_window_closes_it():
    em = raised()
    assert kinds(em.dispatch_ack(T0 + 3.0)) == [AlarmAcknowledged]
    assert em.next_deadline() is None
    assert em.tick(T0 + 100) == []  # no late AlarmActivated
    assert kinds(em.cancel(T0 + 4.0)) == [CancelRefused]
    assert em.state is S.ACKNOWLEDGED


def test_dispatch_can_clear_in_every_alarm_state():
    em = raised()
    assert kinds(em.dispatch_clear(T0 + 3)) == [AlarmCleared]
    em = active()
    assert kinds(em.dispatch_clear(T0 + 30)) == [AlarmCleared]


def test_dispatch_commands_without_an_alarm_do_nothing():
    em = emergency()
    assert em.dispatch_ack(T0) == [] and em.dispatch_clear(T0) == []
    em.press(T0)
    assert em.dispatch_clear(T0 + 1) == []
    assert em.state is S.HOLDING


def test_a_clear_naming_another_alarm_is_ignored():
    em = active()
    em.dispatch_clear(T0 + 20, alarm_id=A1)
    em.press(T0 + 30)
    em.tick(T0 + 32)
    assert em.alarm_id == A2  # a new id for each alarm
    assert em.dispatch_clear(T0 + 33, alarm_id=A1) == []  # a stale clear for the old alarm
    assert em.dispatch_ack(T0 + 33, alarm_id=alarm_uuid(7)) == []
    assert em.state is S.PENDING
    assert kinds(em.dispatch_ack(T0 + 34, alarm_id=A2)) == [AlarmAcknowledged]
    assert kinds(em.dispatch_clear(T0 + 35, alarm_id=A2)) == [AlarmCleared]


def test_a_new_alarm_after_a_clear():
    em = active()
    em.dispatch_clear(T0 + 20)
    em.press(T0 + 30)
    events = em.tick(T0 + 32)
    assert kinds(events) == [AlarmRaised] and events[0].alarm_id == A2


# ------------------------------------------------------------------ restarts


def restart(em: Emergency, now: float, hold_s=2.0, cancel_s=5.0, ids=None):
    data = json.loads(json.dumps(em.snapshot()))  # as stored on disk
    fresh = emergency(hold_s, cancel_s, ids)
    return fresh, fresh.restore(data, now)


def test_restart_with_no_alarm():
    fresh, events = restart(emergency(), 5.0)
    assert events == [] and fresh.state is S.NONE


def test_restart_while_holding_forgets_the_hold():
    em = emergency()
    em.press(T0)
    fresh, events = restart(em, 5.0)
    assert events == [] and fresh.state is S.NONE and fresh.next_deadline() is None


def test_restart_while_pending_comes_back_active():
    em = raised()
    fresh, events = restart(em, 3.0)
    assert kinds(events) == [AlarmRestored]
    assert (events[0].state, events[0].alarm_id, events[0].at) == (S.ACTIVE, A1, 3.0)
    assert fresh.state is S.ACTIVE and fresh.alarm_out and not fresh.cancellable
    assert kinds(fresh.cancel(4.0)) == [CancelRefused]


@pytest.mark.parametrize("acknowledge", [False, True])
def test_restart_while_active_or_acknowledged_keeps_it(acknowledge):
    em = active()
    if acknowledge:
        em.dispatch_ack(T0 + 20)
    fresh, events = restart(em, 7.0)
    expected = S.ACKNOWLEDGED if acknowledge else S.ACTIVE
    assert kinds(events) == [AlarmRestored] and events[0].state is expected
    assert fresh.state is expected and fresh.alarm_id == A1
    assert kinds(fresh.dispatch_clear(8.0, alarm_id=A1)) == [AlarmCleared]


def test_every_alarm_gets_a_new_id_across_restarts_and_reinstalls():
    # The real source: random ids need no counter on the card, so a restart, a new card or another
    # unit never gives an id twice, and an answer naming an old alarm never matches a new one.
    seen = set()
    em = emergency(ids=random_alarm_id)
    for restart_at in range(50):
        em.press(T0)
        first = em.tick(T0 + 2.0)[0].alarm_id
        em.dispatch_clear(T0 + 3.0, alarm_id=first)
        em, _ = restart(em, 1.0, ids=random_alarm_id)
        assert first not in seen
        seen.add(first)
        assert em.dispatch_clear(T0 + 4.0, alarm_id=first) == []
    assert len(seen) == 50


def test_a_first_version_snapshot_brings_its_live_alarm_back_with_a_new_id():
    # Stored before alarm ids were random: the alarm stays out; a number can no longer name it.
    old = {"version": 1, "state": "acknowledged", "alarm_id": 3, "last_id": 3}
    fresh = emergency()
    events = fresh.restore(old, 7.0)
    assert kinds(events) == [AlarmRestored] and events[0].alarm_id == A1
    assert fresh.state is S.ACKNOWLEDGED and fresh.alarm_id == A1
    assert fresh.restore({"version": 1, "state": "none", "alarm_id": None, "last_id": 3}, 8.0) == []
    assert fresh.state is S.NONE


@pytest.mark.parametrize("bad", [
    None,
    [],
    {"state": "active", "alarm_id": 1, "last_id": 1},  # no version
    {"version": 1, "state": "panic", "alarm_id": None, "last_id": 0},
    {"version": 1, "state": "active", "alarm_id": None, "last_id": 0},
    {"version": 1, "state": "active", "alarm_id": 3, "last_id": 2},
    {"version": 1, "state": "none", "alarm_id": 1, "last_id": 1},
    {"version": 1, "state": "none", "alarm_id": None, "last_id": -1},
    {"version": 1, "state": "none", "alarm_id": None, "last_id": "7"},
    {"version": 3, "state": "none", "alarm_id": None},
    {"version": 2, "state": "active", "alarm_id": None},
    {"version": 2, "state": "active", "alarm_id": 4},
    {"version": 2, "state": "active", "alarm_id": ""},
    {"version": 2, "state": "none", "alarm_id": A1},
])
def test_a_malformed_snapshot_is_a_clear_error(bad):
    em = emergency()
    with pytest.raises(ValueError, match="emergency snapshot"):
        em.restore(bad, 0.0)
    assert em.state is S.NONE


def test_the_snapshot_never_stores_a_hold():
    em = emergency()
    em.press(T0)
    assert em.snapshot() == {"version": 2, "state": "none", "alarm_id": None}


def test_bad_timings_are_refused():
    with pytest.raises(ValueError):
        emergency(0.0, 5.0)
    with pytest.raises(ValueError):
        emergency(2.0, -1.0)


# -------------------------------------------------------------------- the table


def test_the_table_says_what_every_input_does_in_every_state_and_why():
    from agent.core.emergency import TRANSITIONS, Input

    assert set(TRANSITIONS) == set(S)
    for state, rules in TRANSITIONS.items():
        assert set(rules) == set(Input), f"{state}: nothing may be decided by omission"
        for given, rule in rules.items():
            assert rule.why.strip(), f"{state} / {given}: the rule says why"
            assert rule.deadline in ("keep", "hold", "window", "clear"), (state, given)
            if rule.ends:
                assert rule.to is S.NONE, (state, given)
            if rule.named:
                # Only dispatch answers name an alarm, and only they may be ignored for naming another.
                assert given in (Input.DISPATCH_ACK, Input.DISPATCH_CLEAR), (state, given)
            elif given in (Input.DISPATCH_ACK, Input.DISPATCH_CLEAR):
                assert rule.to is None, f"{state} / {given}: an answer that changes the alarm must name it"
        # A deadline always moves on (else tick would loop): it clears, or starts the next one.
        assert rules[Input.DEADLINE].deadline in ("clear", "window"), state


def test_the_machine_does_what_the_table_says():
    # Each (state, input) that changes the state, walked from a real machine.
    from agent.core.emergency import TRANSITIONS, Input

    def machine_in(state) -> Emergency:
        em = emergency()
        if state is S.NONE:
            return em
        em.press(T0)
        if state is not S.HOLDING:
            em.tick(T0 + 2.0)
        if state in (S.ACTIVE, S.ACKNOWLEDGED):
            em.tick(T0 + 7.0)
        if state is S.ACKNOWLEDGED:
            em.dispatch_ack(T0 + 8.0)
        assert em.state is state
        return em

    feed = {Input.PRESS: "press", Input.RELEASE: "release", Input.CANCEL: "cancel",
            Input.DISPATCH_ACK: "dispatch_ack", Input.DISPATCH_CLEAR: "dispatch_clear"}
    for state, rules in TRANSITIONS.items():
        for given, rule in rules.items():
            em = machine_in(state)
            at = T0 + 9.0 if state in (S.ACTIVE, S.ACKNOWLEDGED) else T0 + (2.0 if state is S.PENDING else 1.0)
            if given is Input.DEADLINE:
                if em.next_deadline() is None:
                    continue
                events = em.tick(em.next_deadline())
            else:
                events = getattr(em, feed[given])(at)
            assert em.state is (rule.to or state), (state, given)
            assert [type(e) for e in events] == ([rule.event] if rule.event else []), (state, given)
