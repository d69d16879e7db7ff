"""The installer tools: ``gnss decode`` on captures and ``gnss watch`` on a live port."""

from __future__ import annotations

import io
import json
import os
import threading
import time
import tty
from pathlib import Path

from agent.gnss_tools import decode, format_counters, watch

CORPUS = Path(__file__).parent / "data" / "gnss-corpus"


def test_decode_prints_one_json_object_per_epoch() -> None:
    out = io.StringIO()
    with (CORPUS / "nmea-rtk.log").open("rb") as src:
        counters = decode(src, out)
    lines = out.getvalue().splitlines()
    assert len(lines) == counters.epochs == 122
    first = json.loads(lines[0])
    assert first["time"] == "2020-03-18T13:28:19.600Z" and first["mode"] == 3
    assert set(first) == {"time", "mode", "lat", "lon", "alt", "speed", "track", "hdop", "sats"}
    assert counters.comments == 9 and counters.bad_checksum == 0


def test_decode_survives_any_bytes() -> None:
    junk = bytes(range(256)) * 50 + b"$GPGGA,\xff\r\n#\n$" + os.urandom(4096)
    out = io.StringIO()
    counters = decode(io.BytesIO(junk), out)
    assert counters.skipped_bytes > 10_000
    for line in out.getvalue().splitlines():
        json.loads(line)


def test_watch_shows_fixes_and_counters_until_stopped() -> None:
    master, slave = os.openpty()
    tty.setraw(slave)
    os.set_blocking(master, False)
    data = (CORPUS / "mt3339.log").read_bytes()
    out = io.StringIO()
    stop = threading.Event()
    result: list[int] = []
    t = threading.Thread(target=lambda: result.append(watch(os.ttyname(slave), 9600, out, stop, counters_every=0.2)))
    t.start()

    def shown() -> bool:
        text = out.getvalue()
        return "3D" in text and "counters:" in text

    try:
        # Replay the capture round and round, paced like a fast serial line,
        # until the installer's screen shows a 3D fix and the counters.
        deadline = time.monotonic() + 5
        i = 0
        while not shown() and time.monotonic() < deadline:
            try:
                os.write(master, data[i : i + 256])
            except BlockingIOError:
                pass
            i = (i + 256) % len(data)
            stop.wait(0.01)
        assert shown(), out.getvalue()
    finally:
        stop.set()
        t.join(5)
        os.close(master)
        os.close(slave)
    assert not t.is_alive() and result == [0]
    assert "sentences_ok=" in out.getvalue()


def test_format_counters_is_one_line() -> None:
    from agent.core.gnss import GnssDecoder

    line = format_counters(GnssDecoder().counters)
    assert "\n" not in line and line.startswith("sentences_ok=0 ")
