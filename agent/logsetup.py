"""Logging set-up for the agent: journald on the vehicle, readable text by hand.

What it is for
--------------
On the vehicle the agent runs under systemd, which connects its stderr to
journald. The unit has no log files of its own: an SD card that is written
to all day wears out, and journald (kept in RAM with a size cap, see
``firmware-config/journald/``) already timestamps, rotates and ships logs.

How it works
------------
journald reads one entry per line and understands a syslog priority prefix
``<N>`` at the start of a line (sd-daemon(3)): ``<3>`` error, ``<4>`` warning,
``<6>`` info, ``<7>`` debug. So in journald mode each line is
``<N>logger: message`` with no timestamp (journald adds its own); a
multi-line message (a traceback) gets the prefix on every line so the whole
traceback keeps its priority and ``journalctl -p err`` shows all of it.

Journald mode is chosen when ``journald=True``, or automatically when
``$JOURNAL_STREAM`` names the very stream we write to (systemd.exec(5): it
holds ``device:inode`` of the stdout/stderr it connected, so a child whose
stderr was redirected elsewhere is not fooled by an inherited variable).
Otherwise lines are plain ``2024-03-01 10:20:30,500 WARNING agent.x: ...``.

Only the CLI calls :func:`configure`, once; library code only uses
``logging.getLogger(__name__)`` and never calls ``basicConfig``.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Mapping
from typing import TextIO

# syslog(3) priorities for Python's levels. Python has no NOTICE (5).
_PRIORITIES = (
    (logging.CRITICAL, 2),
    (logging.ERROR, 3),
    (logging.WARNING, 4),
    (logging.INFO, 6),
)
_DEBUG_PRIORITY = 7

_PLAIN_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
_JOURNAL_FORMAT = "%(name)s: %(message)s"

# Marks the handler configure() installed, so a second call replaces it.
_MARK = "_umps_agent_handler"


def syslog_priority(levelno: int) -> int:
    """The syslog priority (0..7) for a Python logging level."""
    for threshold, priority in _PRIORITIES:
        if levelno >= threshold:
            return priority
    return _DEBUG_PRIORITY


class JournalFormatter(logging.Formatter):
    """``<N>name: message``, the prefix repeated on every line."""

    def __init__(self) -> None:
        super().__init__(_JOURNAL_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        prefix = f"<{syslog_priority(record.levelno)}>"
        text = super().format(record)
        return "\n".join(prefix + line for line in text.splitlines() or [""])


def stream_is_journal(stream: TextIO, env: Mapping[str, str] | None = None) -> bool:
    """True when ``$JOURNAL_STREAM`` is ``device:inode`` of ``stream``."""
    value = (os.environ if env is None else env).get("JOURNAL_STREAM", "")
    device, sep, inode = value.partition(":")
    if not sep:
        return False
    try:
        st = os.fstat(stream.fileno())
        return st.st_dev == int(device) and st.st_ino == int(inode)
    except (OSError, ValueError, AttributeError):
        # No real file behind the stream (tests, pytest capture) or a bad value.
        return False


def parse_level(level: str | int) -> int:
    """A logging level from a name (``"info"``, ``"WARNING"``) or a number."""
    if isinstance(level, int):
        return level
    value = logging.getLevelName(level.strip().upper())
    if not isinstance(value, int):
        raise ValueError(f"unknown log level {level!r}: use DEBUG, INFO, WARNING, ERROR or CRITICAL")
    return value


def configure(
    level: str | int = "INFO",
    journald: bool | None = None,
    *,
    stream: TextIO | None = None,
    env: Mapping[str, str] | None = None,
) -> logging.Handler:
    """Send all logging to ``stream`` (stderr) in journald or plain format.

    ``journald=None`` detects it from ``$JOURNAL_STREAM``. Calling it again
    replaces the handler installed before (no duplicated lines). Returns the
    handler. Raises ``ValueError`` for an unknown level name.
    """
    levelno = parse_level(level)
    out = sys.stderr if stream is None else stream
    use_journal = stream_is_journal(out, env) if journald is None else journald

    handler = logging.StreamHandler(out)
    handler.setFormatter(JournalFormatter() if use_journal else logging.Formatter(_PLAIN_FORMAT))
    setattr(handler, _MARK, True)

    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _MARK, False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(levelno)
    # warnings.warn() from libraries goes to the same place, not to raw stderr.
    logging.captureWarnings(True)
    return handler
