"""What the systemd watchdog asks of the running agent before it pings.

``umps-agent.service`` runs with ``WatchdogSec``: while every check below
passes, :class:`~agent.adapters.sdnotify.Watchdog` pings systemd; once one
fails the pings stop and systemd restarts the agent (at once, for a check
marked ``restart_now``: an agent that makes no progress will not recover by
waiting). The checks, in the order they are run:

1. the core loop beat within :data:`HEARTBEAT_MAX_AGE_S` (it wakes at least
   once a second, so a missing beat is a stuck or dead core thread);
2. the GNSS reader, the uplink's sender and the remote-request worker each have
   a live thread;
3. the publish path moves: while the link is up and records are in flight, the
   broker acknowledges one within :data:`PUBLISH_MAX_STALL_S`;
4. telemetry is on schedule (:meth:`CoreProgress.reports_on_schedule`):
   a report at least every :data:`REPORT_MAX_GAP_S`, or every 5 report periods
   if longer. Telemetry is the unit's first duty: a core that ticks but stops
   producing it is stuck;
5. the inbox moves: while events wait, one is handled within
   :data:`INBOX_MAX_STALL_S`.

:class:`CoreProgress` is what the core thread records of itself (beats,
events handled, reports made); the checks read it from the watchdog's thread
(single stores of ints and floats: no lock needed).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field

from agent.adapters import sdnotify

HEARTBEAT_MAX_AGE_S = 10.0
PUBLISH_MAX_STALL_S = 60.0
# Progress the watchdog asks for (else systemd restarts the agent at once, see sdnotify):
# a telemetry report at least this often (or every 5 report periods, if longer) ...
REPORT_MAX_GAP_S = 10.0
# ... and, while events wait in the inbox, one handled at least this often.
INBOX_MAX_STALL_S = 10.0
WATCHDOG_CHECK_EVERY_S = 2.0  # checks (and pings) this often at most, so a stall is seen quickly


@dataclass
class CoreProgress:
    """What the core thread records of itself, for the watchdog and ``umps-agent status``."""

    heartbeat: sdnotify.Heartbeat = field(default_factory=lambda: sdnotify.Heartbeat("core loop", HEARTBEAT_MAX_AGE_S))
    events_handled: int = 0  # handled without an error: what the watchdog calls progress
    core_errors: int = 0
    dropped_events: int = 0  # the inbox was full
    reports_made: int = 0
    last_report_mono: float = field(default_factory=time.monotonic)
    last_report_period: float = 1.0  # the report period when the last report was made

    def report_made(self, mono: float, period: float) -> None:
        self.reports_made += 1
        self.last_report_mono = mono
        self.last_report_period = period

    def reports_on_schedule(self, period: float, now_mono: float) -> tuple[bool, str]:
        """Rule 4, with ``period`` the report period now."""
        # The longer of the periods before and after a rate change (parked <-> driving).
        limit = max(REPORT_MAX_GAP_S, 5 * max(period, self.last_report_period))
        gap = now_mono - self.last_report_mono
        if gap <= limit:
            return True, f"last report {gap:.1f} s ago ({self.reports_made} made)"
        return False, f"no telemetry report for {gap:.1f} s (limit {limit:g} s)"


@dataclass(frozen=True)
class Watched:
    """How the checks read the running agent (each read when the check runs: a rebuilt adapter is
    the new one)."""

    reader_alive: Callable[[], bool]
    uplink_alive: Callable[[], bool]
    worker_alive: Callable[[], bool]
    publish_pending: Callable[[], int]  # records in flight while the link is up (0 offline: waiting is normal)
    publish_done: Callable[[], int]  # acknowledged by the broker
    report_period: Callable[[], float]
    inbox_pending: Callable[[], int]


def checks(core: CoreProgress, watched: Watched) -> list[sdnotify.HealthCheck]:
    """Rules 1 to 5, as the watchdog runs them."""
    return [
        core.heartbeat.check(),
        sdnotify.HealthCheck("gnss reader", lambda: (watched.reader_alive(), "reader thread")),
        sdnotify.HealthCheck("uplink", lambda: (watched.uplink_alive(), "sender thread")),
        sdnotify.HealthCheck("remote requests", lambda: (watched.worker_alive(), "remote-request worker thread")),
        sdnotify.Progress("publish path", pending=watched.publish_pending, done=watched.publish_done,
                          max_stall=PUBLISH_MAX_STALL_S).check(),
        sdnotify.HealthCheck("telemetry", lambda: core.reports_on_schedule(watched.report_period(), time.monotonic()),
                             restart_now=True),
        sdnotify.Progress("inbox", pending=watched.inbox_pending, done=lambda: core.events_handled,
                          max_stall=INBOX_MAX_STALL_S).check(restart_now=True),
    ]


def watchdog(notifier: sdnotify.Notifier, core: CoreProgress, watched: Watched) -> sdnotify.Watchdog:
    """The watchdog of the running agent (started by the lifecycle table, last)."""
    interval = sdnotify.watchdog_interval()
    return sdnotify.Watchdog(notifier, checks(core, watched), interval and min(interval, WATCHDOG_CHECK_EVERY_S))
