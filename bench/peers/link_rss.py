"""The agent's link alone (outbox, uplink, MQTT link) publishing one report a second: its RSS.

``python -m bench.peers.link_rss BROKER_PORT STATE_DIR SECONDS``: prints
``{"rss_kib", "rss_first_kib"}`` (after the last and the first second).
"""

from __future__ import annotations

import json
import sys
import time

from agent.adapters.mqtt import MqttLink, MqttSettings
from agent.adapters.outbox import Outbox
from agent.adapters.uplink import Uplink
from agent.core.publish import Lane
from bench.bench_link import UNIT, report
from bench.peers.import_ladder import rss_kib


def main(argv: list[str]) -> int:
    port, state, seconds = int(argv[0]), argv[1], float(argv[2])
    outbox = Outbox(state)
    uplinks: list[Uplink] = []
    link = MqttLink(MqttSettings(brokers=(("127.0.0.1", port),)), unit_id=UNIT,
                    on_up=lambda broker: uplinks[0].link_up(broker), on_down=lambda reason: uplinks[0].link_down(reason),
                    on_message=lambda *args: None, birth=lambda: b"{}")
    uplink = Uplink(outbox, link)
    uplinks.append(uplink)
    uplink.start()
    link.start()
    seq, start, samples = outbox.next_seq(), time.monotonic(), []
    while time.monotonic() - start < seconds:
        uplink.submit(report(seq, Lane.LIVE))
        seq += 1
        time.sleep(1.0)  # the unit's report rate
        samples.append(rss_kib())
    uplink.stop()
    link.stop()
    outbox.close()
    print(json.dumps({"rss_kib": samples[-1], "rss_first_kib": samples[0]}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
