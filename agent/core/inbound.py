"""Where an inbound MQTT message goes: the remote-request worker, the core, or nowhere.

The unit subscribes to :data:`SUBSCRIPTIONS` (topics relative to
``<prefix>/<unit>/``). The MQTT thread asks :func:`to_worker` for each message;
the core thread asks :func:`dropped` before the unit sees one. The rules:

1. A *retained* ``alarm/ack``, ``alarm/clear`` or ``cmd`` (:data:`NEVER_RETAINED`)
   is stale by definition: an old acknowledgement or clear must never touch a new
   alarm, and a retained command would run again at every connect. It goes to
   neither the worker nor the unit; the core logs it and carries on.
2. ``config/set`` and ``cmd`` (:data:`REQUEST_TOPICS`) are judged off the core
   thread by the remote-request worker (signature, validation, storing). One that
   reaches the core without it (a bug, or a test posting it by hand) is dropped:
   only the worker's result event may change the config or run a command.
3. With ``[security] dispatch_keys`` set, ``call``, ``alarm/ack`` and
   ``alarm/clear`` (:data:`DISPATCH_TOPICS`) are verified by the worker too; the
   unit refuses one that arrives unverified (:meth:`agent.core.unit.Unit.handle`).
   Without keys they go straight to the unit.

Pure functions of the message: the shell carries out what they say.
"""

from __future__ import annotations

from .events import MessageReceived

# Inbound topics (relative to <prefix>/<unit>/) the unit subscribes to.
SUBSCRIPTIONS = ("call", "alarm/ack", "alarm/clear", "config/set", "cmd")
DISPATCH_TOPICS = ("call", "alarm/ack", "alarm/clear")
REQUEST_TOPICS = ("config/set", "cmd")
# Topics whose retained copy is stale by definition: an old ack or clear must never touch a new alarm.
# (A retained command would run again at every connect.)
NEVER_RETAINED = ("alarm/ack", "alarm/clear", "cmd")


def to_worker(topic: str, retained: bool, *, signed_dispatch: bool) -> bool:
    """Whether the remote-request worker takes this message (rules 1 to 3); if not, the core does."""
    if retained and topic in NEVER_RETAINED:
        return False
    return topic in REQUEST_TOPICS or (signed_dispatch and topic in DISPATCH_TOPICS)


def dropped(message: MessageReceived) -> str | None:
    """Why the core must not hand ``message`` to the unit (rules 1 and 2), for the log; None if it may."""
    if message.retained and message.topic in NEVER_RETAINED:
        return f"ignoring a retained {message.topic} (stale by definition; senders must not retain it)"
    if message.topic in REQUEST_TOPICS:
        return f"ignoring a {message.topic} that did not come through the remote-request worker"
    return None
