"""A small record kept where a full SD card still takes it: two slots of a file, overwritten in place.

What it is for
--------------
Writing a new file, or appending to SQLite's write-ahead log, needs free
blocks: a full card refuses them. Overwriting blocks a file already owns needs
none (ext4 and tmpfs rewrite them in place). So the few records that must
survive a full card (the telemetry ``seq`` reservation, the last known fix,
the unit's state when its own file cannot be written) are also kept in a file
of fixed size, made while the card had room, and rewritten in place.

How it works
------------
A :class:`SlotFile` is two slots of ``slot_size`` bytes. A write goes to the
slot of its generation's parity: one ``pwrite`` and one ``fdatasync`` (the size
never changes, so no metadata is written), so a write torn by a power cut
leaves the other slot, one generation older, whole. A slot holds a magic,
the generation, the body's length and CRC-32, then the body (JSON). Reading
takes the valid slot of the highest generation. The file is created whole
(written, fsynced, renamed into place) the first time the directory takes it.

A :class:`Reserve` keeps the same record in several places: the state
directory (survives a power cut) and, when given, the runtime directory (RAM:
survives a restart of the agent even on a read-only card, not a reboot). A
read takes the newest copy. The callers give the generation, so that a copy
can also be weighed against the same record kept elsewhere (the outbox's
``meta`` table carries it too).

A file whose two slots are both unreadable is set aside (``.bad``, kept for
analysis, never deleted) and made again at the next write.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import struct
import tempfile
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

MAGIC = b"UMPSRSV1"
_HEADER = struct.Struct("<8sQII")  # magic, generation, body length, CRC-32 of the body
SLOT_SIZE = 4096


@dataclass(frozen=True, slots=True)
class Copy:
    """One valid slot: its generation and body."""

    gen: int
    body: dict[str, Any]


def set_aside(path: Path) -> Path | None:
    """Move ``path`` to ``<name>.bad`` (or ``.bad.1``, ``.bad.2``...: an earlier one is never
    overwritten); the new path, or None when it could not be moved (logged by the caller)."""
    for n in range(100):
        bad = path.with_name(path.name + (".bad" if n == 0 else f".bad.{n}"))
        if bad.exists():
            continue
        try:
            os.replace(path, bad)
        except OSError:
            return None
        return bad
    return None


class SlotFile:
    """``path``: two slots of ``slot_size`` bytes, each write in place (see the module docstring)."""

    def __init__(self, path: str | Path, slot_size: int = SLOT_SIZE) -> None:
        if slot_size <= _HEADER.size:
            raise ValueError("slot too small")
        self.path = Path(path)
        self.slot_size = slot_size

    @property
    def capacity(self) -> int:
        """The largest body a slot holds, in bytes."""
        return self.slot_size - _HEADER.size

    def read(self) -> Copy | None:
        """The newest valid slot, or None (no file, or nothing valid in it: then set aside)."""
        try:
            data = self.path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as exc:
            log.error("%s unreadable: %s", self.path, exc)
            return None
        copies = [c for c in (self._slot(data, i) for i in (0, 1)) if c is not None]
        if copies:
            return max(copies, key=lambda c: c.gen)
        if any(data):
            bad = set_aside(self.path)
            log.error("%s holds no valid record: set aside as %s", self.path, bad.name if bad else "(could not move)")
        return None

    def write(self, gen: int, body: dict[str, Any]) -> bool:
        """Store ``body`` as generation ``gen``; False when the file could not be made or written."""
        blob = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        if len(blob) > self.capacity:
            raise ValueError(f"{len(blob)} bytes do not fit a {self.slot_size}-byte slot")
        slot = _HEADER.pack(MAGIC, gen, len(blob), zlib.crc32(blob)) + blob
        try:
            if not self.path.exists():
                self._create()
            fd = os.open(self.path, os.O_WRONLY)
            try:
                os.pwrite(fd, slot, (gen % 2) * self.slot_size)
                os.fdatasync(fd)
            finally:
                os.close(fd)
        except OSError as exc:
            log.debug("%s not written: %s", self.path, exc)
            return False
        return True

    def _create(self) -> None:
        """The file at its full size, whole or not at all (a full card leaves no half file)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(bytes(2 * self.slot_size))
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        dir_fd = os.open(self.path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    def _slot(self, data: bytes, index: int) -> Copy | None:
        raw = data[index * self.slot_size:(index + 1) * self.slot_size]
        if len(raw) < _HEADER.size:
            return None
        magic, gen, length, crc = _HEADER.unpack_from(raw)
        blob = raw[_HEADER.size:_HEADER.size + length]
        if magic != MAGIC or length > self.capacity or len(blob) != length or zlib.crc32(blob) != crc:
            return None
        try:
            body = json.loads(blob.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return None
        return Copy(gen, body) if isinstance(body, dict) else None


class Reserve:
    """The same record in several :class:`SlotFile` s (state directory first, then RAM)."""

    def __init__(self, name: str, directories: Iterable[str | Path], slot_size: int = SLOT_SIZE) -> None:
        seen: list[Path] = []
        for d in directories:
            path = Path(d)
            if path not in seen:
                seen.append(path)
        if not seen:
            raise ValueError("a reserve needs at least one directory")
        self.files = [SlotFile(d / name, slot_size) for d in seen]

    @property
    def capacity(self) -> int:
        return self.files[0].capacity

    def read(self) -> Copy | None:
        """The newest copy anywhere, or None."""
        copies = [c for c in (f.read() for f in self.files) if c is not None]
        return max(copies, key=lambda c: c.gen) if copies else None

    def write(self, gen: int, body: dict[str, Any]) -> bool:
        """Write every copy; True when the first (the state directory's, durable) took it."""
        results = [f.write(gen, body) for f in self.files]
        return results[0]

    def durable(self) -> bool:
        """Whether the state directory's copy exists (a full card can still take a write then)."""
        return self.files[0].path.exists()
