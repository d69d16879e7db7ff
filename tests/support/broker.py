"""A real Mosquitto for each test, and a subscriber that records what it sees.

Theory of operation
-------------------
``Broker`` is the rig's launcher (``hil.broker``: ``mosquitto`` from PATH on
a free loopback port with a configuration file written for that test, stopped
by its pid, ``kill9()``/``restart()``, ``log_text()``); here a missing
Mosquitto skips the test with a clear message instead of failing it.

``Recorder`` is a plain paho client that subscribes to topics and records
every message; ``wait_for(predicate, timeout)`` blocks on a condition until
the recorded messages satisfy the predicate, and fails with a useful message
otherwise (tests never assert after a bare sleep).

Tests never use a broker that was already running.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hil.broker import Broker as _Broker
from hil.broker import BrokerUnavailable, TlsListener, free_port, password_line, wait_port, write_password_file
from hil.broker import mosquitto_path as _mosquitto_path
from hil.pki import TlsFiles

__all__ = [
    "Broker", "Received", "Recorder", "TlsListener", "free_port", "mosquitto_path", "password_line",
    "wait_port", "wait_until", "write_password_file",
]


def mosquitto_path() -> str:
    try:
        return _mosquitto_path()
    except BrokerUnavailable as exc:
        pytest.skip(str(exc))


class Broker(_Broker):
    """The rig's broker launcher; a test without Mosquitto is skipped, not failed."""

    def __init__(self, workdir: Path, **kwargs) -> None:
        mosquitto_path()
        super().__init__(workdir, **kwargs)


# --------------------------------------------------------------- recorder


@dataclass(frozen=True)
class Received:
    topic: str
    payload: bytes
    retain: bool
    qos: int
    at: float


@dataclass
class Recorder:
    """A subscriber that records messages; tests wait on it with ``wait_for``."""

    broker: Broker
    topics: Iterable[str] = ("#",)
    client_id: str | None = None
    username: str | None = None
    password: str | None = None
    tls: TlsFiles | None = None
    client_cert: tuple[Path, Path] | None = None
    persistent: bool = False  # a broker session that survives the recorder's (or broker's) restart
    messages: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self.client_id or f"recorder-{os.getpid()}-{id(self)}",
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=not self.persistent,
        )
        # paho's loop reconnects by itself after a broker restart; keep it quick.
        self._client.reconnect_delay_set(0.1, 0.5)
        if self.username is not None:
            self._client.username_pw_set(self.username, self.password)
        if self.tls is not None:
            cert, key = self.client_cert or (None, None)
            self._client.tls_set(ca_certs=str(self.tls.ca_cert), certfile=cert and str(cert), keyfile=key and str(key))
        self._client.on_connect = self._on_connect
        self._client.on_message = self._on_message
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_disconnect = lambda *a: self._subscribed.clear()

    def start(self, timeout: float = 10.0) -> Recorder:
        self._client.connect(self.broker.host, self.broker.port, keepalive=30)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"recorder did not subscribe:\n{self.broker.log_text()}")
        return self

    def wait_subscribed(self, timeout: float = 10.0) -> None:
        """After a broker restart: wait until paho has reconnected and subscribed again."""
        if not self._subscribed.wait(timeout):
            raise TimeoutError(f"recorder did not resubscribe:\n{self.broker.log_text()}")

    def stop(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()

    def publish(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False) -> None:
        info = self._client.publish(topic, payload, qos=qos, retain=retain)
        info.wait_for_publish(5.0)

    def _on_connect(self, client, userdata, flags, reason, props) -> None:
        self._subscribed.clear()
        client.subscribe([(t, 1) for t in self.topics])

    def _on_message(self, client, userdata, msg) -> None:
        rec = Received(msg.topic, bytes(msg.payload), bool(msg.retain), msg.qos, time.monotonic())
        with self._cond:
            self.messages.append(rec)
            self._cond.notify_all()

    def on(self, topic: str) -> list[Received]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def wait_for(self, predicate: Callable[[list[Received]], bool], timeout: float, what: str = "") -> list[Received]:
        """Block until ``predicate(messages)`` is true; fail the test after ``timeout`` s."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not predicate(self.messages):
                left = deadline - time.monotonic()
                if left <= 0:
                    pytest.fail(
                        f"timed out after {timeout} s waiting for {what or predicate}; "
                        f"{len(self.messages)} messages seen, last: {self.messages[-3:]!r}"
                    )
                self._cond.wait(left)
            return list(self.messages)

    def wait_json(self, topic: str, predicate: Callable[[dict], bool] = lambda body: True,
                  timeout: float = 10.0, what: str = "") -> dict:
        """The newest JSON body on ``topic`` for which ``predicate`` holds, waiting for one."""

        def matching(messages: list[Received]) -> list[dict]:
            bodies = (json.loads(m.payload) for m in messages if m.topic == topic and m.payload)
            return [body for body in bodies if predicate(body)]

        return matching(self.wait_for(lambda ms: bool(matching(ms)), timeout, what or topic))[-1]


def wait_until(predicate: Callable[[], bool], timeout: float, what: str = "", interval: float = 0.02) -> None:
    """Poll a condition that has no event to wait on (another process, a counter)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)
