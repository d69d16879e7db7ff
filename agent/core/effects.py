"""Effects: what the core asks the shell to do, besides publishing.

The core returns a list of these (and :class:`agent.core.publish.Publish`
records) from each event it handles; the runtime carries them out. Outputs
that follow from state alone (LED plan, screens, persisted state) are not
effects: the runtime derives them from the core after each event. Remote
configuration and commands are decided by :mod:`.remote_config` and carried
out by the runtime directly.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Feedback:
    """A one-shot answer to a press on the panel: ``accepted`` or ``refused``."""

    kind: str


@dataclass(frozen=True, slots=True)
class Speak:
    """Read a new call out on the helmet intercom (when speech is enabled)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class Shutdown:
    """Stop the agent cleanly and power the unit off (``[power] poweroff_command``).

    ``reason`` goes into the ``online`` goodbye: ``ignition`` (parked with the
    ignition off for ``shutdown_after_s``).
    """

    reason: str


@dataclass(frozen=True, slots=True)
class StoreCrashTrace:
    """Store a crash trace at once (agent/core/crash_watch.py): its ``crash/trace`` messages.

    Handed out at the finding (``complete`` False: what came before and the impact) and again
    complete; the shell writes it to the state directory (in memory when the disk fails) and
    answers the ``crash_trace`` command with it.
    """

    trace_id: str
    parts: tuple[bytes, ...]  # each a crash/trace message
    complete: bool


@dataclass(frozen=True, slots=True)
class Announce:
    """Say the crash prompt on the helmet intercom (when speech is enabled): ``seconds`` to cancel."""

    seconds: int
