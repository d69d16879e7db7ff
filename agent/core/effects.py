"""Effects: what the core asks the shell to do, besides publishing.

The core returns a list of these (and :class:`agent.core.publish.Publish`
records) from each event it handles; the runtime carries them out. Outputs
that follow from state alone (LED plan, screens, persisted state) are not
effects: the runtime derives them from the core after each event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Feedback:
    """A one-shot answer to a press on the panel: ``accepted`` or ``refused``."""

    kind: str


@dataclass(frozen=True, slots=True)
class Speak:
    """Read a new call out on the helmet intercom (when speech is enabled)."""

    call_id: str


@dataclass(frozen=True, slots=True)
class FlushBacklog:
    """Send the stored backlog now, at full rate (a remote command)."""


@dataclass(frozen=True, slots=True)
class ApplyConfig:
    """A remote config push was validated: persist it, then apply it.

    ``config`` is the new effective ``AgentConfig``; ``restart_required`` says
    some change only takes effect after a restart; ``guarded`` says it
    touches the broker link and must be rolled back if no broker can be
    reached with it in time.
    """

    config: Any
    version: int
    restart_required: bool
    guarded: bool


@dataclass(frozen=True, slots=True)
class RollbackConfig:
    """A guarded config change could not reach a broker in time: go back."""

    reason: str
