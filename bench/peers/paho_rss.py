"""Raw paho publishing one report a second, the link's peer: its RSS.

``python -m bench.peers.paho_rss BROKER_PORT SECONDS``: prints
``{"rss_kib", "rss_first_kib"}`` (after the last and the first second).
"""

from __future__ import annotations

import json
import sys
import time

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from agent.core.publish import Lane
from bench.bench_link import report
from bench.peers.import_ladder import rss_kib


def main(argv: list[str]) -> int:
    port, seconds = int(argv[0]), float(argv[1])
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id="raw-rss")
    client.connect("127.0.0.1", port)
    client.loop_start()
    seq, start, samples = 1, time.monotonic(), []
    while time.monotonic() - start < seconds:
        client.publish("umps/raw/telemetry", report(seq, Lane.LIVE).payload, qos=1)
        seq += 1
        time.sleep(1.0)  # the unit's report rate
        samples.append(rss_kib())
    client.disconnect()
    client.loop_stop()
    print(json.dumps({"rss_kib": samples[-1], "rss_first_kib": samples[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
