"""The GNSS peer: a receiver read with pyserial and pynmea2, one fix a second published with paho.

``python -m bench.peers.gnss PORT BROKER_PORT TOPIC CA CERT KEY``: reads NMEA
from the serial ``PORT`` (115200 baud), takes the date from RMC and the fix
from GGA, and publishes ``{"seq", "ts", "fix": {"time", "lat", "lon",
"sats"}}`` on ``TOPIC`` (QoS 1) at most once every 0.95 s: the agent's
report, without its safety and bookkeeping. Prints ``ready``, then runs until
it is terminated. It has no reopen logic: an unplugged receiver ends it.
"""

from __future__ import annotations

import datetime as dt
import json
import sys
import time

import pynmea2
import serial

from bench.peers.mqtt import peer_connect

MIN_INTERVAL_S = 0.95


def _iso(moment: dt.datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def main(argv: list[str]) -> int:
    port, broker, topic = argv[0], int(argv[1]), argv[2]
    client = peer_connect("bench-peer-gnss", broker, *argv[3:6])
    ser = serial.serial_for_url(port, baudrate=115200, timeout=1)
    date, last_pub, seq = None, 0.0, 0
    print("ready", flush=True)
    while True:
        raw = ser.readline()
        if not raw:
            continue
        try:
            msg = pynmea2.parse(raw.decode("ascii", "replace").strip(), check=True)
        except (pynmea2.ParseError, ValueError):
            continue
        if msg.sentence_type == "RMC" and msg.datestamp:
            date = msg.datestamp
        if msg.sentence_type != "GGA" or date is None or not msg.timestamp:
            continue
        now = time.monotonic()
        if now - last_pub < MIN_INTERVAL_S:
            continue
        last_pub, seq = now, seq + 1
        fix_time = dt.datetime.combine(date, msg.timestamp).replace(tzinfo=dt.timezone.utc)
        body = {"seq": seq, "ts": _iso(dt.datetime.now(dt.timezone.utc)),
                "fix": {"time": _iso(fix_time), "lat": msg.latitude, "lon": msg.longitude,
                        "sats": int(msg.num_sats or 0)}}
        client.publish(topic, json.dumps(body).encode(), qos=1)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
