"""agent.core.inbound_text: the rule for text from outside (docs/mqtt-api.md, "Text from outside")."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.core import inbound_text
from agent.core.dispatch import Rejected, parse_call

NEW = {"id": "C-1", "action": "new", "priority": 1, "nature": "Accident", "address": "Av. Mohammed V",
       "created": "2026-11-25T10:00:00Z"}


@pytest.mark.parametrize("raw, where", [
    ('{"nature": "x\\ud800y"}', "nature"),
    ('{"a": {"b": ["ok", "\\udfff"]}}', "a.b[1]"),
    ('{"\\ud834": 1}', "(key)"),
    ('"\\ud800"', "(payload)"),
])
def test_a_lone_surrogate_anywhere_refuses_the_payload(raw, where):
    with pytest.raises(inbound_text.BadText) as info:
        inbound_text.loads(raw)
    assert str(info.value).startswith(f"{where}: not valid Unicode")


def test_a_surrogate_pair_is_a_character_not_a_fault():
    assert inbound_text.loads('{"n": "\\ud83d\\ude91"}') == {"n": "🚑"}


@pytest.mark.parametrize("text, single, multi", [
    ("Rue 12\r\nKénitra", "Rue 12 Kénitra", "Rue 12\nKénitra"),
    ("a\t\tb", "a b", "a  b"),
    ("bell\x07 and NUL\x00 and DEL\x7f and CSI\x9b", "bell and NUL and DEL and CSI", "bell and NUL and DEL and CSI"),
    ("\u202eevil\u202c \u2067x\u2069", "evil x", "evil x"),
    ("حادث\u200f سير", "حادث\u200f سير", "حادث\u200f سير"),  # the RLM Arabic text uses is kept
])
def test_display_text_rule(text, single, multi):
    assert inbound_text.display_text(text) == single
    assert inbound_text.display_text(text, multiline=True) == multi


@given(st.text())
def test_display_text_is_always_sendable_and_shown_safely(text):
    out = inbound_text.display_text(text)
    out.encode("utf-8")
    assert not any(ch in out for ch in inbound_text.BIDI_CONTROLS)
    assert not any(ord(ch) < 0x20 or 0x7F <= ord(ch) <= 0x9F for ch in out)
    assert inbound_text.display_text(out) == out


def test_a_call_with_a_lone_surrogate_is_rejected_with_the_field():
    raw = json.dumps(NEW).replace('"Accident"', '"x\\ud800y"').encode()
    outcome = parse_call(raw)
    assert isinstance(outcome, Rejected) and outcome.error.startswith("nature: not valid Unicode")
    json.dumps({"id": outcome.id, "error": outcome.error}, ensure_ascii=False).encode("utf-8")


def test_a_call_is_cleaned_before_its_lengths_are_checked():
    outcome = parse_call(json.dumps({**NEW, "nature": "\u202e\x07", "details": "a\r\nb"}).encode())
    assert isinstance(outcome, Rejected) and "nature: must be 1 to 200" in outcome.error
    outcome = parse_call(json.dumps({**NEW, "details": "ligne 1\r\nligne 2\x1b[2J"}).encode())
    assert not isinstance(outcome, Rejected) and outcome.details == "ligne 1\nligne 2[2J"


def test_json_nested_past_the_limit_is_refused_before_the_decoder_recurses():
    assert inbound_text.too_deep("[" * 60000)
    assert inbound_text.too_deep("[[[1]]]", 2) and not inbound_text.too_deep("[[1]]", 2)
    # Brackets inside strings, escaped quotes included, are text, not nesting.
    assert not inbound_text.too_deep(json.dumps({"a": 'x"[[[[\\', "b": "{{{{"}), 1)
    with pytest.raises(inbound_text.TooDeep):
        inbound_text.loads(b"[" * 60000)
