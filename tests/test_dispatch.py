"""The call contract and each call's lifecycle (agent.core.dispatch)."""

import datetime as dt
import json

import pytest
from hypothesis import given, settings, strategies as st

from agent.core.dispatch import (
    MAX_CALL_BYTES, Alert, CallBook, Cancelled, Ignored, Rejected, Response, ResponseRefused, Updated, parse_call,
)

NOW = dt.datetime(2026, 11, 25, 20, 0, tzinfo=dt.timezone.utc)


def call(**overrides) -> bytes:
    body = {
        "id": "C-1001", "action": "new", "priority": 1, "nature": "Accident de la circulation",
        "address": "Avenue Mohammed V, Kénitra", "location": {"lat": 34.2610, "lon": -6.5802},
        "created": "2026-11-25T19:58:00Z",
    }
    body.update(overrides)
    return json.dumps({k: v for k, v in body.items() if v is not None}, ensure_ascii=False).encode()


def test_new_call_is_alerted_once():
    book = CallBook()
    first = book.receive(call(), NOW, 1.0)
    assert isinstance(first, Alert) and first.first
    assert first.call.location == (34.2610, -6.5802)
    again = book.receive(call(), NOW, 2.0)
    assert isinstance(again, Ignored) and again.why == "duplicate"
    assert book.shown().id == "C-1001"


def test_arabic_text_round_trips():
    book = CallBook()
    out = book.receive(call(nature="حادثة سير", address="شارع محمد الخامس، القنيطرة"), NOW, 1.0)
    assert isinstance(out, Alert) and out.call.nature == "حادثة سير"


@pytest.mark.parametrize(
    "payload, needle",
    [
        (b"x" * (MAX_CALL_BYTES + 1), "too large"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"{not json", "not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (call(priority=4), "priority: must be 1, 2 or 3"),
        (call(priority=None), "needs: priority"),
        (call(location={"lat": 134, "lon": 0}), "location.lat"),
        (call(created="2026-11-25T19:58:00"), "time zone"),
        (call(action="delete"), "action"),
        (call(id="a b/#"), "id"),
        (call(id=None), "id: is required"),
        (call(nature=42), "nature: must be a string, not a number"),
        (call(nature="   "), "nature: must be 1 to 200 characters"),
        (call(code="X" * 25), "code: must be at most 24 characters"),
        (call(location=[34.2, -6.5]), "location: must be an object"),
        (call(location={"lat": 34.2}), "location.lon: is required"),
        (call(location={"lat": True, "lon": 0}), "location.lat: must be a number"),
        (call(created="yesterday"), "created: must be an ISO 8601"),
        (call(priority=True), "priority: must be 1, 2 or 3"),
    ],
)
def test_bad_payloads_are_rejected_with_a_reason(payload, needle):
    out = CallBook().receive(payload, NOW, 1.0)
    assert isinstance(out, Rejected)
    assert needle in out.error


def test_rejection_keeps_a_readable_id():
    out = CallBook().receive(call(priority=9), NOW, 1.0)
    assert isinstance(out, Rejected) and out.id == "C-1001"


def test_a_rejection_lists_every_problem_of_the_call_at_once():
    # A bad priority, a bad position and two missing fields: all four, so dispatch fixes them in one go.
    out = CallBook().receive(call(priority=9, location={"lat": 134, "lon": 0}, nature=None, created=None), NOW, 1.0)
    assert isinstance(out, Rejected)
    assert out.error.startswith("priority: must be 1, 2 or 3"), out.error
    assert "location.lat:" in out.error and out.error.endswith("a new call needs: nature, created"), out.error
    # An update need not be a full call: only its own problem.
    out = CallBook().receive(call(action="update", priority=9, nature=None, created=None), NOW, 1.0)
    assert isinstance(out, Rejected) and "needs" not in out.error


def test_update_changes_fields_and_keeps_state():
    book = CallBook()
    book.receive(call(), NOW, 1.0)
    book.respond("received")
    out = book.receive(call(action="update", address="Rue Ibn Sina", priority=None, nature=None, created=None), NOW, 2.0)
    assert isinstance(out, Updated)
    assert out.call.address == "Rue Ibn Sina" and out.call.nature == "Accident de la circulation"
    assert out.call.state == "received"


def test_cancel_before_new_suppresses_the_late_new():
    book = CallBook()
    assert isinstance(book.receive(call(action="cancel"), NOW, 1.0), Cancelled)
    late = book.receive(call(), NOW, 2.0)
    assert isinstance(late, Ignored) and "cancelled" in late.why
    assert book.shown() is None


def test_update_for_unknown_call_is_taken_when_complete_else_rejected():
    book = CallBook()
    assert isinstance(book.receive(call(action="update"), NOW, 1.0), Alert)
    partial = book.receive(call(id="C-2", action="update", nature=None), NOW, 1.0)
    assert isinstance(partial, Rejected) and "unknown call id" in partial.error


def test_lifecycle_and_status_follow_responses():
    book = CallBook()
    book.receive(call(), NOW, 1.0)
    assert isinstance(book.respond("accepted"), ResponseRefused)  # not yet received
    assert book.respond("received").call.state == "received"
    accepted = book.respond("accepted")
    assert isinstance(accepted, Response) and accepted.status is None
    assert book.respond("en_route").status == "en_route"
    assert isinstance(book.respond("en_route"), ResponseRefused)  # no going back or repeating
    assert isinstance(book.respond("declined"), ResponseRefused)  # too late to decline
    assert book.respond("on_scene").status == "on_scene"
    cleared = book.respond("cleared")
    assert cleared.closed and cleared.status == "available"
    assert book.shown() is None
    assert isinstance(book.receive(call(), NOW, 9.0), Ignored)  # a redelivered new after clearing


def test_most_urgent_unaccepted_call_is_shown():
    book = CallBook()
    book.receive(call(id="C-3", priority=3), NOW, 1.0)
    book.receive(call(id="C-1", priority=1), NOW, 2.0)
    assert book.shown().id == "C-1"
    book.respond("received", "C-1")
    book.respond("accepted", "C-1")
    assert book.shown().id == "C-3"  # still waiting for an answer
    assert book.working().id == "C-1"  # while the crew works the accepted one


def test_snapshot_restore_keeps_calls_and_closed_ids():
    book = CallBook()
    book.receive(call(), NOW, 1.0)
    book.respond("received")
    book.receive(call(id="C-9", action="cancel"), NOW, 1.0)
    restored = CallBook.restore(json.loads(json.dumps(book.snapshot())), 100.0)
    assert restored.shown().id == "C-1001" and restored.shown().state == "received"
    assert isinstance(restored.receive(call(id="C-9"), NOW, 101.0), Ignored)


@settings(max_examples=300, deadline=None)
@given(st.one_of(st.binary(max_size=300), st.text(max_size=200).map(str.encode),
                 st.dictionaries(st.sampled_from(["id", "action", "priority", "nature", "address", "created", "location"]),
                                 st.one_of(st.none(), st.integers(), st.text(max_size=20), st.floats()), max_size=7)
                 .map(lambda d: json.dumps(d).encode())))
def test_any_payload_never_raises(payload):
    parse_call(payload)
    CallBook().receive(payload, NOW, 0.0)


def test_a_late_copy_of_new_never_undoes_an_update():
    import datetime as _dt
    import json as _json

    from agent.core.dispatch import CallBook, Ignored

    book, now = CallBook(), _dt.datetime(2026, 11, 25, 10, 0, tzinfo=_dt.timezone.utc)
    new = {"id": "C-9", "action": "new", "priority": 2, "nature": "Rixe", "address": "Rue 12",
           "created": "2026-11-25T09:59:00Z"}
    book.receive(_json.dumps(new).encode(), now, 1.0)
    book.receive(_json.dumps({"id": "C-9", "action": "update", "address": "Bd Hassan II"}).encode(), now, 2.0)
    assert isinstance(book.receive(_json.dumps(new).encode(), now, 3.0), Ignored)
    assert book.calls["C-9"].address == "Bd Hassan II"


def test_strings_are_stripped_unknown_fields_ignored_and_times_made_utc():
    out = CallBook().receive(call(id=" C-7 ", nature="  Vol  ", location={"lat": 34, "lon": -6, "alt": 12},
                                  created="2026-11-25T20:58:00+01:00", radio="TG-4"), NOW, 1.0)
    assert isinstance(out, Alert)
    assert out.call.id == "C-7" and out.call.nature == "Vol" and out.call.location == (34.0, -6.0)
    assert out.call.created == dt.datetime(2026, 11, 25, 19, 58, tzinfo=dt.timezone.utc)


def test_the_short_address_is_taken_checked_updated_and_kept_over_a_restart():
    book = CallBook()
    first = book.receive(call(address_short="  Marché central "), NOW, 1.0)
    assert isinstance(first, Alert) and first.call.address_short == "Marché central"
    assert first.call.to_json()["address_short"] == "Marché central"
    updated = book.receive(call(action="update", address_short="Souk"), NOW, 2.0)
    assert isinstance(updated, Updated) and updated.call.address_short == "Souk"
    restored = CallBook.restore(json.loads(json.dumps(book.snapshot())), 100.0)
    assert restored.shown().address_short == "Souk"
    rejected = CallBook().receive(call(id="C-2", address_short="x" * 61), NOW, 1.0)
    assert isinstance(rejected, Rejected) and "address_short: must be at most 60 characters" in rejected.error
