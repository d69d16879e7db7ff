"""Where an inbound message goes (agent/core/inbound.py): pure rules, no thread, no broker."""

from __future__ import annotations

import pytest

from agent.core.events import MessageReceived
from agent.core.inbound import DISPATCH_TOPICS, NEVER_RETAINED, REQUEST_TOPICS, SUBSCRIPTIONS, dropped, to_worker


def message(topic: str, *, retained: bool = False, verified: bool = False) -> MessageReceived:
    return MessageReceived(topic, b"{}", 1.0, retained, verified)


def test_every_topic_the_rules_name_is_subscribed():
    assert set(NEVER_RETAINED) | set(REQUEST_TOPICS) | set(DISPATCH_TOPICS) == set(SUBSCRIPTIONS)


@pytest.mark.parametrize("topic", NEVER_RETAINED)
def test_a_retained_ack_clear_or_command_goes_nowhere(topic):
    # Stale by definition: an old ack or clear must never touch a new alarm, a command never run again.
    for signed in (False, True):
        assert not to_worker(topic, True, signed_dispatch=signed)
    assert dropped(message(topic, retained=True)) == \
        f"ignoring a retained {topic} (stale by definition; senders must not retain it)"


def test_a_retained_call_and_config_are_not_stale_by_definition():
    assert dropped(message("call", retained=True)) is None
    assert to_worker("config/set", True, signed_dispatch=False)


@pytest.mark.parametrize("topic", REQUEST_TOPICS)
def test_config_and_commands_always_go_to_the_worker(topic):
    assert to_worker(topic, False, signed_dispatch=False)
    assert to_worker(topic, False, signed_dispatch=True)


@pytest.mark.parametrize("topic", REQUEST_TOPICS)
def test_config_or_command_that_skipped_the_worker_is_dropped(topic):
    why = dropped(message(topic))
    assert why == f"ignoring a {topic} that did not come through the remote-request worker"
    # Even one marked verified: only the worker's result event changes the config or runs a command.
    assert dropped(message(topic, verified=True)) is not None


@pytest.mark.parametrize("topic", DISPATCH_TOPICS)
def test_dispatch_goes_to_the_worker_only_when_signed(topic):
    assert not to_worker(topic, False, signed_dispatch=False)
    assert to_worker(topic, False, signed_dispatch=True)
    # What comes to the core (straight, or verified by the worker) is the unit's to judge.
    assert dropped(message(topic)) is None
    assert dropped(message(topic, verified=True)) is None


def test_unknown_topics_go_to_the_unit_which_counts_them():
    assert not to_worker("x/y", False, signed_dispatch=True)
    assert dropped(message("x/y")) is None
