"""Where a real unit's alarm ids come from: the kernel's random generator.

:mod:`agent.core.alarm_id` says why an alarm id is random and how it is written; the core
cannot draw random bytes itself (it does no I/O), so the composition root hands the unit
:func:`random_alarm_id`.

``os.urandom`` is ``getrandom(2)``: it never fails and never blocks once the kernel's
generator has been seeded, which happens early in the boot (before systemd starts any
service, on the kernels Raspberry Pi OS ships), long before the agent can raise an alarm.
"""

from __future__ import annotations

import os

from agent.core.alarm_id import ENTROPY_BYTES, from_entropy


def random_alarm_id() -> str:
    """A new alarm id (a random UUID)."""
    return from_entropy(os.urandom(ENTROPY_BYTES))
