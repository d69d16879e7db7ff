"""Parked mode: what the ignition changes in the unit's reporting, and when a parked unit powers off.

The rules (pure; the ignition level comes from agent/adapters/power.py):

1. The unit is *parked* when the ignition is off, its status is ``available``
   or ``out_of_service``, no call is on its screens and no alarm is raised or
   being raised. Without an ignition line (not wired) it is never parked.
2. Parked, telemetry goes at ``[power] parked_rate_hz`` (1/60 Hz by default):
   a parked car still shows on the map, at a sixtieth of the data and SD card
   writes. Leaving parked mode (ignition on, a status change, a call, the
   emergency button) restores ``[telemetry] rate_hz`` at once: the next report
   is due within one normal period.
3. Parked for ``shutdown_after_s`` (15 min by default; 0: never) the unit
   stops cleanly and powers off (the ``Shutdown("ignition")`` effect). A crew
   working a call with the engine off (on scene, on foot) is not parked, so
   its unit stays up as long as the battery or hold-up supply allows.
"""

from __future__ import annotations

from dataclasses import dataclass

PARKED_STATUSES = ("available", "out_of_service")


@dataclass
class Parking:
    """The ignition as the unit last heard it, and how long it has been parked."""

    ignition: bool | None = None  # None: no ignition line
    parked_since: float | None = None
    shutdown_asked: bool = False

    def is_parked(self, status: str, busy: bool) -> bool:
        """Rule 1; ``busy``: a call on the screens or an alarm raised or being raised."""
        return self.ignition is False and status in PARKED_STATUSES and not busy

    def update(self, parked: bool, mono: float) -> bool:
        """Note whether the unit is parked now; True when that changed."""
        if parked == (self.parked_since is not None):
            return False
        self.parked_since = mono if parked else None
        if not parked:
            self.shutdown_asked = False
        return True

    def shutdown_deadline(self, shutdown_after_s: float) -> float | None:
        """When rule 3 powers the unit off (None: not parked, disabled or already asked)."""
        if self.parked_since is None or shutdown_after_s <= 0 or self.shutdown_asked:
            return None
        return self.parked_since + shutdown_after_s

    def shutdown_due(self, shutdown_after_s: float, mono: float) -> bool:
        deadline = self.shutdown_deadline(shutdown_after_s)
        if deadline is None or mono < deadline:
            return False
        self.shutdown_asked = True
        return True

    @property
    def ignition_json(self) -> str | None:
        """``ignition`` of status and telemetry: ``"on"``, ``"off"``, or null (no ignition line)."""
        return None if self.ignition is None else ("on" if self.ignition else "off")
