"""Every adapter's lifecycle in one declared table: how it starts and stops, what rebuilds it, and why it is where it is.

:data:`ADAPTERS` lists the rows in start order, like a systemd unit list. Each
row gives

* ``start`` and ``stop``: what the row does to the agent's :class:`~agent.parts.Parts`
  (an optional adapter, such as the power lines or the rider display, is made by
  its start and dropped by its stop; one that is always there was built with the
  parts and is only started);
* ``rebuilt_by``: the config changes that rebuild it in-process after a remote push
  or a rollback (its stop, ``renew`` when it has one, then its start). A plain name
  is an adapter part that :mod:`agent.core.key_rules` names for a ``reinit`` key
  (``gnss``, ``gpio``, ``display``, ``mqtt``); a dotted key path is a hot key the
  adapter is built from, rebuilt whenever it changes;
* ``stops``: :data:`FIRST` for the watchdog and the inputs, stopped before the core
  so that no event arrives once it has stopped; :data:`CORE` for the core itself;
  :data:`AFTER` for what serves the core until its last event (the link, the
  screens). Within each group, stops run newest first;
* ``why``: the reason for its place in the start order.

Rows after the core start while the core already runs, so they are started and
rebuilt under one lock (the core may rebuild a screen that :func:`start` is still
bringing up). :func:`start` records what it started; :func:`stop` stops only that,
each stop on its own: one that fails is logged and the rest still run.

This module is the only place adapters are started (``tests/test_architecture.py``).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from dataclasses import dataclass

from agent.adapters.gpio import PinFactoryError
from agent.core.events import Stop
from agent.parts import Parts, quietly
from agent.watchdog_rules import Watched, watchdog

log = logging.getLogger("agent.runtime")

FIRST, CORE, AFTER = "first", "core", "after the core"
CORE_JOIN_S = 10.0


@dataclass(frozen=True)
class Adapter:
    name: str
    start: Callable[[Parts], None]
    stop: Callable[[Parts], None]
    rebuilt_by: tuple[str, ...]
    stops: str
    why: str
    renew: Callable[[Parts], None] | None = None

    def rebuilt(self, reinit: Iterable[str], paths: Iterable[str]) -> bool:
        """Whether a config change (its ``reinit`` parts and changed key ``paths``) rebuilds this adapter."""
        parts, changed = set(reinit), tuple(paths)
        return any(key in parts if "." not in key else any(p == key or p.startswith(key + ".") for p in changed)
                   for key in self.rebuilt_by)


def _start_power(p: Parts) -> None:
    try:
        power = p.new_power()
        if power is not None:
            power.start()
        p.power = power
    except (PinFactoryError, ValueError, OSError, RuntimeError) as exc:
        # Without the lines the unit still works: always "driving", and a cut may lose a batch.
        log.error("power inputs unavailable: %s", exc)
        p.power = None


def _start_link(p: Parts) -> None:
    p.uplink.start()
    p.restored_messages()
    p.link.start()


def _start_imu(p: Parts) -> None:
    p.imu = p.new_imu()
    if p.imu is not None:
        p.imu.start()


def _start_touchscreen(p: Parts) -> None:
    web, ui = p.outputs.new_touchscreen(p.config), p.config.ui
    if web is None:
        return
    try:
        web.start()
        p.outputs.web = web
        log.info("touchscreen page at %s", web.url)
    except OSError as exc:
        log.error("touchscreen page cannot start on %s:%d: %s", ui.host, ui.http_port, exc)


def _renew_link(p: Parts) -> None:
    log.warning("broker settings changed: reconnecting")
    p.link, p.uplink = p.new_link()


def _renew_reader(p: Parts) -> None:
    p.reader = p.new_reader()


def _start_core(p: Parts) -> None:
    p.core_thread = threading.Thread(target=p.core_loop, name="core", daemon=True)
    p.core_thread.start()


def _stop_core(p: Parts) -> None:
    p.post(Stop(p.stop_reason, time.monotonic()), force=True)
    thread = p.core_thread
    if thread is not None:
        thread.join(CORE_JOIN_S)
        if thread.is_alive():
            log.error("core thread did not stop within %g s", CORE_JOIN_S)


def _start_watchdog(p: Parts) -> None:
    p.watchdog = watchdog(p.notifier, p.core, Watched(
        reader_alive=lambda: p.reader.alive,
        uplink_alive=lambda: p.uplink.alive,
        worker_alive=lambda: p.worker.alive,
        publish_pending=lambda: p.outbox.stats().in_flight if p.link.connected else 0,
        publish_done=lambda: p.link.stats().acked,
        report_period=lambda: p.unit.schedule.period,
        inbox_pending=p.inbox.qsize,
    ))
    p.watchdog.start()


def _stop_watchdog(p: Parts) -> None:
    if p.watchdog is not None:
        p.watchdog.stop()


ADAPTERS: tuple[Adapter, ...] = (
    Adapter("remote worker", lambda p: p.worker.start(), lambda p: p.worker.stop(), (), AFTER,
            "takes config/set and cmd from the link's first connect on; it alone writes the config store"),
    Adapter("power", _start_power, Parts.stop_power, (), FIRST,
            "the ignition's level is on the inbox before the first LinkUp: the first status says it"),
    Adapter("link", _start_link, lambda p: p.stop_link(p.exit_reason), ("mqtt",), AFTER,
            "connects while the rest starts; the restored state's messages go into the uplink before it "
            "connects, and the goodbye at a stop says why (the link stops after the core)",
            renew=_renew_link),
    Adapter("gnss", lambda p: p.reader.start(), lambda p: p.reader.stop(), ("gnss",), FIRST,
            "its fixes wait on the inbox until the core runs", renew=_renew_reader),
    Adapter("panel", Parts.start_panel, Parts.stop_panel, ("gpio",), FIRST,
            "a press while the agent starts waits on the inbox, timed by its own edges"),
    Adapter("imu", _start_imu, Parts.stop_imu, (), FIRST,
            "the crash sensor's samples wait on the inbox like the other inputs"),
    Adapter("core", _start_core, _stop_core, (), CORE,
            "before the screens: the touchscreen's server takes seconds to start (longer on a Pi), and an "
            "alarm held meanwhile must go out then, not once the page is up"),
    Adapter("storage health", lambda p: p.storage.start(), lambda p: p.storage.stop(), (), AFTER,
            "brings a store back once the card recovers; what it finds is an event for the running core"),
    Adapter("touchscreen", _start_touchscreen, lambda p: p.outputs.stop_touchscreen(),
            (), AFTER, "after the core; the screens get their first picture at the core's next round (at most 1 s)"),
    Adapter("display", lambda p: p.outputs.start_display(p.config, p.unit), lambda p: p.outputs.stop_display(),
            ("display", "panel.labels"), AFTER, "after the core, like the touchscreen"),
    Adapter("speech", lambda p: p.outputs.start_speech(p.config), lambda p: p.outputs.stop_speech(),
            ("display.speech",), AFTER, "after the core, like the screens"),
    Adapter("watchdog", _start_watchdog, _stop_watchdog, (), FIRST,
            "last: its checks read every thread started above; stopped first, so a stop is no stall"),
)


def _late(rows: tuple[Adapter, ...]) -> set[str]:
    """The rows that start while the core runs."""
    names = [row.name for row in rows]
    return set(names[names.index("core") + 1:]) if "core" in names else set()


def start(p: Parts, rows: tuple[Adapter, ...] = ADAPTERS) -> None:
    """Start every row in order; what started is recorded for :func:`stop`."""
    late = _late(rows)
    for row in rows:
        with p.screens_lock if row.name in late else nullcontext():
            row.start(p)
            p.started.append(row.name)


def stop(p: Parts, rows: tuple[Adapter, ...] = ADAPTERS) -> None:
    """Stop what started: the watchdog and the inputs, the core, then the rest; newest first in each."""
    started = [row for row in reversed(rows) if row.name in p.started]
    for group in (FIRST, CORE, AFTER):
        for row in started:
            if row.stops == group:
                quietly(row.name, lambda row=row: row.stop(p))
                p.started.remove(row.name)


def rebuild(p: Parts, reinit: Iterable[str], paths: Iterable[str], rows: tuple[Adapter, ...] = ADAPTERS) -> None:
    """Rebuild, in start order, each running row a config change touches (on the core thread)."""
    reinit, paths = tuple(reinit), tuple(paths)
    late = _late(rows)
    for row in rows:
        if not row.rebuilt(reinit, paths):
            continue
        with p.screens_lock if row.name in late else nullcontext():  # the start may still be bringing it up
            if row.name not in p.started:
                continue  # not started yet: it starts with the new config
            quietly(row.name, lambda row=row: row.stop(p))
            if row.renew is not None:
                row.renew(p)
            row.start(p)
