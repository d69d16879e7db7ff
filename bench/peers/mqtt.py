"""The MQTT side of a peer: raw paho, MQTT 5, the rig's mutual TLS, connected before it returns."""

from __future__ import annotations

import threading

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

CONNECT_TIMEOUT_S = 10.0


def peer_connect(client_id: str, port: int, ca: str, cert: str, key: str) -> paho.Client:
    """A started paho client on the rig's broker (127.0.0.1:``port``) with a client certificate."""
    client = paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=MQTTProtocolVersion.MQTTv5)
    client.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
    up = threading.Event()
    client.on_connect = lambda *args: up.set()
    client.connect("127.0.0.1", port)
    client.loop_start()
    if not up.wait(CONNECT_TIMEOUT_S):
        client.loop_stop()
        raise SystemExit(f"{client_id}: no CONNACK from 127.0.0.1:{port} in {CONNECT_TIMEOUT_S:g} s")
    return client
