"""Installer tools behind ``umps-agent gnss decode`` and ``umps-agent gnss watch``.

``decode`` is the offline tool, like gpsd's ``gpsdecode``: it runs a capture
through the same decoder the agent uses and prints one JSON object per epoch.
``watch`` opens the live receiver with the same reader the agent uses and
prints each epoch and, every few seconds, the counters, so an installer can
see at a glance whether the antenna has sky and the wiring is right.

``watch`` must not compete with the running agent for the receiver: one serial
port read by two processes gives each only part of the bytes, and the agent
would report the receiver lost to dispatch. :func:`agent_reading` finds a live
agent reading the same device from its status file (the port it reads is in the
report), so the CLI can refuse.

The CLI (``agent.cli``) parses arguments and calls these plain functions.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from dataclasses import asdict
from typing import BinaryIO, TextIO

from agent.core.events import Fix
from agent.core.gnss import GnssCounters, GnssDecoder, fix_to_json

__all__ = ["decode", "watch", "format_counters", "agent_reading"]

_CHUNK = 64 * 1024


def decode(src: BinaryIO, out: TextIO) -> GnssCounters:
    """Decode a capture from ``src``; one JSON line per epoch to ``out``.

    Lines starting with ``#`` are comments. Any bytes are accepted: what is
    not NMEA is skipped and counted in the returned counters.
    """
    decoder = GnssDecoder(comments=True)
    while True:
        chunk = src.read(_CHUNK)
        if not chunk:
            break
        for fix in decoder.feed(chunk):
            out.write(json.dumps(fix_to_json(fix)) + "\n")
    for fix in decoder.flush():
        out.write(json.dumps(fix_to_json(fix)) + "\n")
    out.flush()
    return decoder.counters


def format_counters(counters: GnssCounters) -> str:
    """One line, ``name=value`` pairs, for people."""
    return " ".join(f"{k}={v}" for k, v in asdict(counters).items())


def _format_fix(fix: Fix) -> str:
    when = fix.iso_time() or "--:--:--"
    if not fix.valid:
        return f"{when}  no fix (mode {fix.mode})  sats={fix.sats} hdop={fix.hdop}"
    alt = "-" if fix.alt is None else f"{fix.alt:.1f} m"
    speed = "-" if fix.speed is None else f"{fix.speed * 3.6:.1f} km/h"
    return (
        f"{when}  {fix.mode}D  {fix.lat:.6f} {fix.lon:.6f}  alt {alt}  {speed}"
        f"  sats={fix.sats} hdop={fix.hdop}"
    )


def watch(
    port: str,
    baudrate: int,
    out: TextIO,
    stop: threading.Event | None = None,
    *,
    counters_every: float = 5.0,
) -> int:
    """Show live epochs and counters from the receiver until Ctrl-C or ``stop``.

    Returns the process exit code: 0 when at least one epoch arrived, 1 when
    the receiver never produced one.
    """
    from agent.adapters.serial_gnss import SerialGnssReader  # the only I/O here

    stop = stop if stop is not None else threading.Event()
    lock = threading.Lock()
    seen = 0

    def say(line: str) -> None:
        with lock:
            out.write(line + "\n")
            out.flush()

    def on_fix(fix: Fix) -> None:
        nonlocal seen
        seen += 1
        say(_format_fix(fix))

    reader = SerialGnssReader(
        port,
        baudrate,
        on_fix=on_fix,
        on_lost=lambda reason: say(f"GNSS lost: {reason}"),
        on_restored=lambda: say("GNSS restored"),
    )
    say(f"watching {port} at {baudrate} baud; Ctrl-C to stop")
    reader.start()
    try:
        next_report = time.monotonic() + counters_every
        while not stop.wait(0.2):
            if time.monotonic() >= next_report:
                next_report += counters_every
                say("counters: " + format_counters(reader.counters))
    except KeyboardInterrupt:
        pass
    finally:
        reader.stop()
        say("counters: " + format_counters(reader.counters))
    return 0 if seen else 1


def same_device(a: str, b: str) -> bool:
    """Whether two ports name one device (symlinks such as /dev/serial0 resolved); URLs by their text."""
    if "://" in a or "://" in b:
        return a == b
    return os.path.realpath(a) == os.path.realpath(b)


def agent_reading(port: str, status_files: Iterable[Path]) -> tuple[int, Path] | None:
    """(pid, status file) of a live agent that reads ``port``, from the agents' status files; else None."""
    from agent.status_report import agent_alive

    for path in dict.fromkeys(status_files):
        try:
            report = json.loads(path.read_text())
            theirs = report["gnss"]["port"]
        except (OSError, ValueError, KeyError, TypeError):
            continue
        if isinstance(theirs, str) and same_device(port, theirs) and agent_alive(report):
            return report["pid"], path
    return None
