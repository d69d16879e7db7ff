"""The outbox's payload encodings: batches read back byte for byte, damage is a CodecError."""

from __future__ import annotations

import hashlib
import os
import zlib

import pytest

from agent.adapters.outbox_codec import (
    DICT_V1,
    ENC_DEFLATE_V1,
    ENC_RAW,
    CodecError,
    Entry,
    decode,
    pack_batch,
    unpack_batch,
)
from tests.support.reports import realistic_report


def entries(payloads: dict[int, bytes]) -> list[Entry]:
    return [Entry(id=100 + seq, seq=seq, qos=1, retain=False, topic="umps/units/u/telemetry", payload=p)
            for seq, p in payloads.items()]


def test_a_batch_reads_back_byte_for_byte_whatever_the_payload() -> None:
    payloads = {
        1: realistic_report(1).payload,
        2: realistic_report(2, note="Zone industrielle — accès nord, véhicule 2 ✓").payload,  # not ASCII
        3: b'{"seq":3}',
        4: os.urandom(300),  # incompressible
        5: realistic_report(5, blob="x" * 5000).payload,  # large
        6: b"",
    }
    packed = entries(payloads) + [Entry(id=7, seq=None, qos=0, retain=True, topic="status/é", payload=b"x")]
    assert unpack_batch(pack_batch(packed), len(packed)) == packed


def test_consecutive_reports_deflate_together_to_a_fraction_of_their_json() -> None:
    reports = {seq: realistic_report(seq).payload for seq in range(1, 31)}
    alone = sum(len(pack_batch(entries({seq: p}))) for seq, p in reports.items())
    together = len(pack_batch(entries(reports)))
    # ~350 bytes of JSON a report; ~95 deflated alone; together, under 45 each.
    assert together < 45 * 30 < alone < sum(len(p) for p in reports.values())


def test_a_single_deflated_report_of_format_2_reads_back() -> None:
    payload = realistic_report(7).payload
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICT_V1)
    assert decode(ENC_DEFLATE_V1, packer.compress(payload) + packer.flush()) == payload
    assert decode(ENC_RAW, memoryview(payload)) == payload


@pytest.mark.parametrize("damage", ["truncated", "padded", "garbage", "count", "empty"])
def test_a_damaged_batch_is_a_codec_error_never_a_wrong_record(damage: str) -> None:
    good = pack_batch(entries({1: b'{"seq":1}', 2: b'{"seq":2}'}))
    stored, count = {
        "truncated": (good[:-3], 2),
        "padded": (good + b"\x00", 2),
        "garbage": (b"\xde\xad\xbe\xef", 2),
        "count": (good, 3),
        "empty": (pack_batch([]), 1),
    }[damage]
    with pytest.raises(CodecError):
        unpack_batch(stored, count)


def test_an_entry_cut_inside_its_header_or_body_is_a_codec_error() -> None:
    packer = zlib.compressobj(9, zlib.DEFLATED, -15, 9, zlib.Z_DEFAULT_STRATEGY, DICT_V1)
    with pytest.raises(CodecError, match="truncated entry"):
        unpack_batch(packer.compress(b"\x01\x02\x03") + packer.flush(), 1)


def test_an_unknown_encoding_is_a_codec_error() -> None:
    with pytest.raises(CodecError, match="unknown encoding 9"):
        decode(9, b"x")


def test_the_preset_dictionary_is_frozen_it_is_part_of_the_format_on_every_card() -> None:
    # Stored batches can only be read with the dictionary they were written with.
    assert hashlib.sha256(DICT_V1).hexdigest()[:16] == "8b16eb3175193906"
