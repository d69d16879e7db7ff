"""Receiver faults the GNSS emulator can inject, and the pure byte surgery.

Each fault is something a patrol unit meets in service:

==============  ===============================================================
``fix_lost``    In a tunnel or underpass (alias ``tunnel``): the receiver keeps
                talking at its rate, but RMC status ``V``, GGA quality 0, empty
                position, GSA mode 1, no satellite used.
``garbage``     Line noise: random bytes (binary included) before sentences.
``bad_checksum`` Sentences whose checksum does not match their body.
``truncated``   Sentences cut short (a dropped tail), still ending in CRLF.
``time_jump``   The receiver's clock steps by ``offset_s`` seconds (default one
                hour); with a duration it steps back when the fault ends.
``silence``     The receiver stops talking; the port stays open.
``unplug``      The USB adapter is pulled: the pty goes away (the reader gets
                an error), or TCP clients are dropped and the port closes. With
                a duration it is plugged back at the same path/port after.
==============  ===============================================================

``ratio`` (0-1) makes ``garbage``, ``bad_checksum`` and ``truncated`` hit only
that share of sentences (drawn from the emulator's seeded generator).

The functions below are pure transforms on one framed line (``bytes`` ending
in ``\\r\\n``); randomness comes from the ``random.Random`` passed in.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

from hil.nmea_gen import checksum

FAULT_KINDS = ("fix_lost", "garbage", "bad_checksum", "truncated", "time_jump", "silence", "unplug")
ALIASES = {"tunnel": "fix_lost"}
LINE_FAULTS = ("garbage", "bad_checksum", "truncated")


@dataclass(frozen=True, slots=True)
class Fault:
    """What goes wrong; when and for how long is the caller's business."""

    kind: str
    offset_s: float = 3600.0  # time_jump only
    ratio: float = 1.0  # garbage, bad_checksum, truncated

    def __post_init__(self) -> None:
        kind = ALIASES.get(self.kind, self.kind)
        if kind not in FAULT_KINDS:
            raise ValueError(f"unknown fault {self.kind!r}; known: {', '.join(FAULT_KINDS + tuple(ALIASES))}")
        object.__setattr__(self, "kind", kind)
        if not 0.0 <= self.ratio <= 1.0:
            raise ValueError(f"fault ratio must be within 0..1, got {self.ratio}")


def as_fault(value: "Fault | str") -> Fault:
    return value if isinstance(value, Fault) else Fault(value)


# ---------------------------------------------------------------- transforms


def corrupt_checksum(line: bytes) -> bytes:
    """Replace the checksum with a different, still well-formed, one."""
    body, star, _ = line.rstrip(b"\r\n").rpartition(b"*")
    if not star:
        return line
    good = int(checksum(body[1:].decode("ascii", "replace")), 16)
    return body + b"*" + f"{good ^ 0x5A:02X}".encode() + b"\r\n"


def truncate(line: bytes, rng: random.Random) -> bytes:
    """Cut the sentence somewhere before its checksum; keep the CRLF."""
    text = line.rstrip(b"\r\n")
    star = text.rfind(b"*")
    end = star if star > 2 else len(text)
    if end <= 2:
        return line
    return text[: rng.randint(2, end - 1)] + b"\r\n"


def garbage(rng: random.Random, low: int = 8, high: int = 64) -> bytes:
    """A burst of line noise: arbitrary bytes, never a CRLF pair or a ``$``.

    Avoiding ``$`` and CRLF keeps the noise from forging sentence boundaries,
    so a test can tell exactly which sentences it damaged; real noise can do
    that too, which the capture replays cover.
    """
    n = rng.randint(low, high)
    return bytes(b for b in (rng.randrange(256) for _ in range(n)) if b not in (0x24, 0x0A, 0x0D))


def blank_fix(line: bytes) -> bytes:
    """Rewrite one sentence as the receiver would send it without a fix.

    For replayed captures: RMC (status V), GGA (quality 0), GNS (mode N), GLL
    (status V), VTG (mode N) and GSA (mode 1) are rewritten with empty
    position/velocity fields and a fresh checksum; other sentences pass.
    """
    text = line.rstrip(b"\r\n").decode("ascii", "replace")
    if not text.startswith("$") or len(text) < 7:
        return line
    body = text[1:].split("*", 1)[0]
    fields = body.split(",")
    kind = fields[0][2:] if len(fields[0]) == 5 else fields[0][-3:]

    def blank(indices: range | list[int]) -> None:
        for i in indices:
            if i < len(fields):
                fields[i] = ""

    if kind == "RMC" and len(fields) > 9:
        fields[2] = "V"
        blank([3, 4, 5, 6, 7, 8, 10, 11])
        if len(fields) > 12:
            fields[12] = "N"
    elif kind == "GGA" and len(fields) > 9:
        blank([2, 3, 4, 5, 9, 10, 11, 12, 13, 14])
        fields[6], fields[7], fields[8] = "0", "00", "99.99"
    elif kind == "GNS" and len(fields) > 6:
        blank([2, 3, 4, 5, 8, 9, 10, 11, 12])
        fields[6] = "N" * max(1, len(fields[6]))
        fields[7] = "00"
    elif kind == "GLL" and len(fields) > 6:
        blank([1, 2, 3, 4])
        fields[6] = "V"
        if len(fields) > 7:
            fields[7] = "N"
    elif kind == "VTG" and len(fields) > 8:
        blank([1, 3, 5, 7])
        if len(fields) > 9:  # NMEA 2.3+ mode indicator
            fields[9] = "N"
    elif kind == "GSA" and len(fields) > 17:
        fields[2] = "1"
        blank(range(3, 15))
        fields[15] = fields[16] = fields[17] = "99.99"
    else:
        return line
    new_body = ",".join(fields)
    return f"${new_body}*{checksum(new_body)}\r\n".encode("ascii", "replace")
