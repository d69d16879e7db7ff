"""The rig's recorder against a real Mosquitto: what it keeps, how it names topics, how it waits."""

from __future__ import annotations

import time

from hil.peers import BrokerTap
from hil.recorder import Recorder
from tests.support.broker import Broker


def test_a_unit_tap_names_the_units_topics_relative_and_others_whole(broker: Broker) -> None:
    tap = BrokerTap(broker.host, broker.port, prefix="umps", unit_id="KEN-M-07").start()
    other = Recorder(broker.host, broker.port, ["#"]).start()
    try:
        mark = tap.mark()
        assert tap.publish("call", b'{"id": "C-1"}')  # acknowledged by the broker
        seen = tap.wait_message(lambda m: m.topic == "call", 5.0, mark)
        assert seen is not None and seen.json() == {"id": "C-1"} and seen.qos == 1 and not seen.retain
        assert seen.wall > time.time() - 60 and seen.mono <= time.monotonic()
        # The same message as a recorder without a base sees it: the whole topic.
        assert other.wait_message(lambda m: m.topic == "umps/KEN-M-07/call", 5.0) is not None
        # A topic outside the unit's, once the tap subscribes to it, is kept whole with a leading "/".
        result, mid = tap.client.subscribe("umps/PEER/status", 1)
        assert result == 0
        # The subscription takes effect at the broker before a later publish on the same
        # broker is routed, but the tap's SUBSCRIBE and the other client's PUBLISH travel on
        # two connections: publish until one arrives.
        peer = None
        for _ in range(50):
            assert other.publish("umps/PEER/status", b"not json")
            peer = tap.wait_message(lambda m: m.topic == "/umps/PEER/status", 0.1)
            if peer is not None:
                break
        assert peer is not None and peer.json() is None
        assert [m.topic for m in tap.on("call")] == ["call"]
    finally:
        tap.stop()
        other.stop()


def test_waiting_for_what_never_comes_times_out_with_none(broker: Broker) -> None:
    rec = Recorder(broker.host, broker.port, ["umps/#"]).start()
    try:
        started = time.monotonic()
        assert rec.wait_message(lambda m: True, 0.3) is None
        assert rec.wait_for(lambda ms: len(ms) > 0, 0.3) is None
        assert time.monotonic() - started >= 0.6
    finally:
        rec.stop()
