"""The button peer: status buttons read with gpiozero (pigpio pin factory), each press published with paho.

``python -m bench.peers.button BROKER_PORT PIGPIO_PORT TOPIC PINS_JSON CA CERT KEY``:
``PINS_JSON`` maps a status to its BCM pin (``{"en_route": 5}``); a press of
that pin publishes ``{"status": ...}`` on ``TOPIC``, QoS 1, retained, as the
agent's status message is. Prints ``ready``, then runs until stdin closes.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable

from gpiozero import Button
from gpiozero.pins.pigpio import PiGPIOFactory

from bench.peers.mqtt import peer_connect


def main(argv: list[str]) -> int:
    broker, pigpio_port, topic, pins = int(argv[0]), int(argv[1]), argv[2], json.loads(argv[3])
    client = peer_connect("bench-peer-button", broker, *argv[4:7])
    factory = PiGPIOFactory(host="127.0.0.1", port=pigpio_port)

    def publisher(status: str) -> Callable[[], None]:
        body = json.dumps({"status": status}).encode()
        return lambda: client.publish(topic, body, qos=1, retain=True)

    buttons = []
    for status, pin in pins.items():
        button = Button(pin, pull_up=True, bounce_time=None, pin_factory=factory)
        button.when_pressed = publisher(status)
        buttons.append(button)
    print("ready", flush=True)
    sys.stdin.read()
    for button in buttons:
        button.close()
    factory.close()
    client.disconnect()
    client.loop_stop()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
