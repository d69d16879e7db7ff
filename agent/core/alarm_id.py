"""Alarm ids: unique across restarts, units and reinstalls, so an answer names one alarm only.

An alarm's id is what makes dispatch's ``alarm/ack`` and ``alarm/clear`` fresh. An answer
names the alarm it means; the unit applies it only to that alarm. A captured answer replayed
later names an alarm that is over, so it touches nothing, whatever the clock says and whether
or not the unit still remembers having seen it. For that, no two alarms may ever share an id:
not after a restart, not on another unit, not after the SD card is replaced. A counter kept on
the card restarts at 1 the day the card does.

So an id is 122 random bits written as a UUID (RFC 9562, version 4), e.g.
``"8f14e45f-ceea-4e7a-9b3c-1d2e3f405a6b"``. Two ids drawn anywhere, ever, meet with a
probability of about n² / 2¹²³ for n alarms: nil for any fleet. Dispatch databases store them
in a ``uuid`` column as they are.

The core draws nothing itself (it has no I/O and no randomness): the unit is given a function
that returns a new id (:func:`agent.adapters.alarm_ids.random_alarm_id` on a real unit, a
counter in tests), and this module only gives the bytes their form and checks an id read from
a message.
"""

from __future__ import annotations

import re
import uuid

ALARM_ID_PATTERN = r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$"
_ALARM_ID = re.compile(ALARM_ID_PATTERN, re.IGNORECASE)
ENTROPY_BYTES = 16
EXAMPLE = "8f14e45f-ceea-4e7a-9b3c-1d2e3f405a6b"


def from_entropy(entropy: bytes) -> str:
    """The alarm id made of 16 random bytes (the version and variant bits are set over 6 of them)."""
    if len(entropy) != ENTROPY_BYTES:
        raise ValueError(f"an alarm id takes {ENTROPY_BYTES} random bytes, not {len(entropy)}")
    return str(uuid.UUID(bytes=bytes(entropy), version=4))


def normalise(value: object) -> str | None:
    """``value`` as the unit writes alarm ids (lower case), or None when it is not one."""
    if not isinstance(value, str):
        return None
    value = value.strip()
    return value.lower() if _ALARM_ID.match(value) else None
