"""How the outbox stores a payload: as it is, or many telemetry reports deflated together.

What it is for
--------------
A 1 Hz report is ~350 bytes of JSON, and a day offline is 86,400 of them on an
SD card. Consecutive reports share most of their bytes (the keys, the unit, the
status, the leading digits of the position and the time), so the outbox writes
the telemetry of one commit as one row: its reports framed one after the other
and deflated together, with a preset dictionary of a report's keys and usual
values. ~350 bytes of JSON take ~30 in a batch of 30 (~95 deflated alone).
Reading gives back each payload byte for byte.

How it works
------------
``records.enc`` (agent/adapters/outbox.py) says how a row's ``payload`` is
stored:

* ENC_RAW (0): as it was put. Emergency and status records.
* ENC_DEFLATE_V1 (1): one report, raw deflate with DICT_V1. Written by format
  2 stores only; still read.
* ENC_BATCH_V1 (2): several records, each an ENTRY header (record id, seq or
  -1, qos, retain, topic and payload lengths), the topic and the payload, in
  one raw deflate stream with DICT_V1.

The codes and DICT_V1 are part of the on-disk format: never edit them; a
better dictionary or framing gets a new code. A stored row that does not
decode raises CodecError (a damaged card); the store drops that row alone.
This module does no I/O: bytes in, entries out.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Iterable
from typing import NamedTuple, Protocol

ENC_RAW = 0
ENC_DEFLATE_V1 = 1  # one report, deflated with DICT_V1 (read only: format 2)
ENC_BATCH_V1 = 2  # several records, each ENTRY + topic + payload, one deflate stream with DICT_V1
# A batch entry's header: record id, seq (-1: none), qos, retain, topic and payload lengths.
ENTRY = struct.Struct("<QqBBHI")

# The preset dictionary of ENC_DEFLATE_V1 and ENC_BATCH_V1: the keys and the usual
# values of a telemetry report (agent/core/unit.py), commonest last. Part of the
# on-disk format: never edit it; a better one gets a new ``enc`` code.
DICT_V1 = (
    b'"call":null,"status":"available","status":"on_scene","status":"busy","status":"out_of_service",'
    b'"time_source":"system_unsynced","time_source":"gnss","fix":{"mode":1,"time":null,"lat":null,"lon":null,'
    b'"alt":null,"speed":null,"track":null,"hdop":null,"sats":null,"age":null},"state":"new","state":"received",'
    b'"state":"accepted","state":"on_scene","siren":false,"emergency":true,'
    b'{"unit":"","seq":1,"ts":"2026-01-01T00:00:00.000Z","time_source":"system","fix":{"mode":3,'
    b'"time":"2026-01-01T00:00:00.000Z","lat":0.0,"lon":-0.0,"alt":1.0,"speed":0.0,"track":0.0,"hdop":0.9,'
    b'"sats":1,"age":0.0},"status":"en_route","siren":true,"emergency":false,"call":{"id":"C-2026-0",'
    b'"state":"en_route"}}'
)


class CodecError(ValueError):
    """A stored payload that cannot be decoded (truncated, padded, unknown encoding)."""


class Packable(Protocol):
    """What a batch entry is made of (the outbox's Record has these)."""

    @property
    def id(self) -> int: ...
    @property
    def seq(self) -> int | None: ...
    @property
    def qos(self) -> int: ...
    @property
    def retain(self) -> bool: ...
    @property
    def topic(self) -> str: ...
    @property
    def payload(self) -> bytes: ...


class Entry(NamedTuple):
    """One record read back from a batch."""

    id: int
    seq: int | None
    qos: int
    retain: bool
    topic: str
    payload: bytes


def inflate(stored: bytes) -> bytes:
    """One raw deflate stream with DICT_V1, whole (CodecError if cut short or padded)."""
    unpacker = zlib.decompressobj(-15, DICT_V1)
    try:
        data = unpacker.decompress(stored) + unpacker.flush()
    except zlib.error as exc:
        raise CodecError(f"damaged deflate stream: {exc}") from exc
    if not unpacker.eof or unpacker.unused_data:
        raise CodecError("truncated or padded record")
    return data


def pack_batch(records: Iterable[Packable]) -> bytes:
    """Records as one ENC_BATCH_V1 payload: consecutive reports share most of
    their bytes, so together they deflate to ~30 bytes a report against ~95
    for one alone."""
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICT_V1)
    out = []
    for r in records:
        topic = r.topic.encode("utf-8")
        head = ENTRY.pack(r.id, -1 if r.seq is None else r.seq, r.qos, int(r.retain), len(topic), len(r.payload))
        out.append(packer.compress(head + topic + r.payload))
    out.append(packer.flush())
    return b"".join(out)


def unpack_batch(stored: bytes, count: int) -> list[Entry]:
    """The ``count`` entries of an ENC_BATCH_V1 payload, in the order they were packed."""
    data = memoryview(inflate(stored))
    entries = []
    pos = 0
    while pos < len(data):
        if pos + ENTRY.size > len(data):
            raise CodecError("truncated entry")
        rid, seq, qos, retain, n_topic, n_payload = ENTRY.unpack_from(data, pos)
        pos += ENTRY.size
        end = pos + n_topic + n_payload
        if end > len(data):
            raise CodecError("truncated entry")
        try:
            topic = str(data[pos : pos + n_topic], "utf-8")
        except UnicodeDecodeError as exc:
            raise CodecError(f"entry topic is not UTF-8: {exc}") from exc
        entries.append(Entry(rid, None if seq < 0 else seq, qos, bool(retain), topic, bytes(data[pos + n_topic : end])))
        pos = end
    if len(entries) != count:
        raise CodecError(f"{len(entries)} records, {count} expected")
    return entries


def decode(enc: int, stored: bytes) -> bytes:
    """A single record's payload exactly as it was put (byte for byte)."""
    if enc == ENC_RAW:
        return bytes(stored)
    if enc == ENC_DEFLATE_V1:
        return inflate(stored)
    raise CodecError(f"outbox record stored with unknown encoding {enc}")
