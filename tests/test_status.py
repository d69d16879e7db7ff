"""The unit status transition table: every pair, both from the table and from a hand-written list."""

from __future__ import annotations

import itertools

import pytest

from agent.config import STATUS_CODES
from agent.core import status as status_module
from agent.core.status import REASONS, TRANSITIONS, StatusMachine, Transition

ALL = list(STATUS_CODES)

# Written out by hand, independently of TRANSITIONS, so a change to either is caught.
EXPECTED_ALLOWED = {
    ("available", "en_route"), ("available", "on_scene"), ("available", "busy"), ("available", "out_of_service"),
    ("en_route", "available"), ("en_route", "on_scene"), ("en_route", "busy"),
    ("on_scene", "available"), ("on_scene", "en_route"), ("on_scene", "busy"),
    ("busy", "available"), ("busy", "en_route"), ("busy", "on_scene"),
    ("out_of_service", "available"),
}
EXPECTED_REFUSED = {
    ("en_route", "out_of_service"): "must_clear_first",
    ("on_scene", "out_of_service"): "must_clear_first",
    ("busy", "out_of_service"): "must_clear_first",
    ("out_of_service", "en_route"): "return_via_available",
    ("out_of_service", "on_scene"): "return_via_available",
    ("out_of_service", "busy"): "return_via_available",
}

PAIRS = [(a, b) for a, b in itertools.product(ALL, ALL) if a != b]


def test_the_table_lists_every_pair_and_nothing_else():
    assert set(TRANSITIONS) == set(STATUS_CODES)
    for source, targets in TRANSITIONS.items():
        assert set(targets) == set(STATUS_CODES) - {source}, source
        for reason in targets.values():
            assert reason is None or reason in REASONS


def test_the_table_matches_the_hand_written_rules():
    allowed = {(a, b) for a, row in TRANSITIONS.items() for b, reason in row.items() if reason is None}
    refused = {(a, b): reason for a, row in TRANSITIONS.items() for b, reason in row.items() if reason is not None}
    assert allowed == EXPECTED_ALLOWED
    assert refused == EXPECTED_REFUSED


@pytest.mark.parametrize(("source", "target"), PAIRS)
def test_every_transition_from_the_table(source, target):
    machine = StatusMachine(source, ALL)
    result = machine.request(target)
    assert isinstance(result, Transition)
    assert result.previous == source and result.target == target
    if (source, target) in EXPECTED_ALLOWED:
        assert result.accepted and result.reason is None
        assert machine.state == target == result.status
    else:
        assert not result.accepted
        assert result.reason == EXPECTED_REFUSED[(source, target)]
        assert machine.state == source == result.status
        assert result.explanation == REASONS[result.reason]


@pytest.mark.parametrize("status", ALL)
def test_pressing_the_current_status_is_refused_not_silent(status):
    machine = StatusMachine(status, ALL)
    result = machine.request(status)
    assert (result.accepted, result.reason) == (False, "same_status")
    assert machine.state == status


def test_a_status_without_a_button_on_this_vehicle_is_refused():
    motorcycle = StatusMachine("available", ["available", "en_route", "on_scene", "out_of_service"])
    result = motorcycle.request("busy")
    assert (result.accepted, result.reason) == (False, "no_such_button")
    assert motorcycle.state == "available"


def test_an_unknown_code_is_refused_with_its_own_reason():
    machine = StatusMachine("available", ALL)
    assert machine.request("lunch").reason == "unknown_status"
    assert machine.request("").reason == "unknown_status"
    assert machine.state == "available"


def test_a_typical_shift():
    machine = StatusMachine("out_of_service", ALL)
    steps = ["en_route", "available", "en_route", "on_scene", "en_route", "on_scene", "out_of_service",
             "available", "out_of_service"]
    answers = [(machine.request(s).accepted, machine.state) for s in steps]
    assert answers == [
        (False, "out_of_service"), (True, "available"), (True, "en_route"), (True, "on_scene"),
        (True, "en_route"), (True, "on_scene"), (False, "on_scene"), (True, "available"),
        (True, "out_of_service"),
    ]


def test_check_does_not_change_the_state():
    machine = StatusMachine("available", ALL)
    assert machine.check("en_route").accepted
    assert machine.state == "available"


def test_targets_lists_the_buttons_that_would_be_accepted():
    assert StatusMachine("out_of_service", ALL).targets() == ["available"]
    assert StatusMachine("en_route", ALL).targets() == ["available", "on_scene", "busy"]
    moto = StatusMachine("available", ["available", "en_route", "on_scene", "out_of_service"])
    assert moto.targets() == ["en_route", "on_scene", "out_of_service"]


def test_restore_puts_a_stored_status_back():
    machine = StatusMachine("available", ["available", "en_route"])
    machine.restore("busy")  # no busy button any more: the status is still real
    assert machine.state == "busy"
    assert machine.request("available").accepted
    with pytest.raises(ValueError, match="unknown status"):
        machine.restore("gone_fishing")
    assert machine.state == "available"


def test_bad_construction_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown status button"):
        StatusMachine("available", ["available", "coffee"])
    with pytest.raises(ValueError, match="must include 'available'"):
        StatusMachine("en_route", ["en_route", "on_scene"])
    with pytest.raises(ValueError, match="unknown status"):
        StatusMachine("asleep", ALL)


def test_the_module_opens_with_the_rules():
    doc = status_module.__doc__
    assert doc.lstrip().startswith("The unit status")
    for reason in ("same_status", "must_clear_first", "return_via_available", "no_such_button"):
        assert reason in doc
