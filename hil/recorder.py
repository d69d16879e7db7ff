"""The rig's MQTT recorder: one paho client that keeps every message it sees.

The scenario engine (as ``hil.peers.BrokerTap``), the bench and the test
suite all record the broker with this one class.

It subscribes to ``topics`` (QoS 1) and keeps each message with its
monotonic and wall-clock arrival times. With a ``base`` (``<prefix>/<unit>/``)
topics under it are kept relative to it (``"status"``) and others as ``"/" +
full topic``, and :meth:`publish` publishes under it; without one, topics are
kept and published whole. Callbacks only append under a lock and notify:
:meth:`wait_for` blocks on that condition (a predicate over the whole list)
and :meth:`wait_message` on the first message from a mark on that matches;
nothing polls, nothing sleeps.

paho reconnects by itself after the broker restarts. ``persistent=True``
asks for a session the broker keeps: after an outage the recorder is
subscribed the moment the broker is back, before a unit can publish its
backlog, and QoS 1 messages wait for it. TLS (the CA, and a client
certificate where the broker requires one) and a username are optional.
"""

from __future__ import annotations

import itertools
import json
import socket
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

if TYPE_CHECKING:
    from hil.seq_ledger import SeqLedger

PUBLISH_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class Message:
    """One message as the recorder saw it."""

    topic: str  # whole, or relative to the recorder's base ("/" + whole outside it)
    payload: bytes
    retain: bool
    qos: int
    mono: float  # time.monotonic() on arrival
    wall: float  # time.time() on arrival

    def json(self) -> Any:
        """The payload as JSON when it is a JSON object, else None."""
        try:
            value = json.loads(self.payload)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None


@dataclass(frozen=True)
class ClientTls:
    """A client's TLS files: the CA to trust, and its certificate and key when the broker asks for one."""

    ca: Path
    cert: Path | None = None
    key: Path | None = None

    @classmethod
    def issue(cls, pki: Any, name: str) -> "ClientTls":
        """A client certificate for ``name`` from a ``hil.pki.TlsFiles``."""
        cert, key = pki.client(name)
        return cls(pki.ca_cert, cert, key)

    def apply(self, client: paho.Client) -> None:
        client.tls_set(ca_certs=str(self.ca), certfile=self.cert and str(self.cert),
                       keyfile=self.key and str(self.key))

    def argv(self) -> list[str]:
        """The three files, for a peer's command line."""
        return [str(self.ca), str(self.cert), str(self.key)]


class Recorder:
    """Subscribe, record, wait; publish as one of the rig's peers."""

    _ids = itertools.count(1)

    def __init__(self, host: str, port: int, topics: Iterable[str] = ("#",), *, base: str = "",
                 client_id: str | None = None, tls: ClientTls | None = None,
                 username: str | None = None, password: str | None = None, persistent: bool = False,
                 on_message: Callable[[Message], None] | None = None) -> None:
        self.host, self.port = host, port
        self.topics = list(topics)
        self.base = base
        self.messages: list[Message] = []
        self._on_message_cb = on_message
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self.client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"umps-recorder-{next(self._ids)}-{id(self):x}",
            protocol=MQTTProtocolVersion.MQTTv311,
            clean_session=not persistent,
        )
        self.client.reconnect_delay_set(0.1, 0.5)  # quick again after a broker restart
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls is not None:
            tls.apply(self.client)
        self.client.on_connect = self._cb_connect
        self.client.on_socket_open = _no_delay
        self.client.on_message = self._cb_message
        self.client.on_subscribe = lambda *a: self._subscribed.set()
        self.client.on_disconnect = lambda *a: self._subscribed.clear()

    # ---------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> "Recorder":
        self.client.connect(self.host, self.port, keepalive=10)
        self.client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"the recorder could not subscribe on {self.host}:{self.port} within {timeout} s")
        return self

    def wait_subscribed(self, timeout: float = 10.0) -> bool:
        """After a broker restart: True once paho has reconnected and subscribed again."""
        return self._subscribed.wait(timeout)

    def stop(self) -> None:
        try:
            self.client.disconnect()
        finally:
            self.client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set()

    # ---------------------------------------------------------- recording

    def _cb_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(flags, "session_present", False):
            # Subscribing again would make the broker resend retained messages as if new.
            self._subscribed.set()
        else:
            client.subscribe([(t, 1) for t in self.topics])

    def _cb_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        topic = msg.topic
        if self.base:
            topic = topic[len(self.base):] if topic.startswith(self.base) else "/" + topic
        seen = Message(topic, bytes(msg.payload), bool(msg.retain), msg.qos, time.monotonic(), time.time())
        with self._cond:
            self.messages.append(seen)
            self._cond.notify_all()
        if self._on_message_cb is not None:
            try:
                self._on_message_cb(seen)
            except Exception:  # a progress printer must never kill paho's loop
                pass

    def snapshot(self) -> list[Message]:
        with self._cond:
            return list(self.messages)

    def mark(self) -> int:
        """The index the next message will have (for :meth:`wait_message`)."""
        with self._cond:
            return len(self.messages)

    def on(self, topic: str) -> list[Message]:
        with self._cond:
            return [m for m in self.messages if m.topic == topic]

    def seq_ledger(self, unit_base: str = "") -> "SeqLedger":
        """One unit's telemetry account so far (hil/seq_ledger.py): its births and reports, the
        ones under ``unit_base`` (``<prefix>/<unit>/``, or "" for the recorder's own base)."""
        from hil.seq_ledger import SeqLedger

        ledger = SeqLedger()
        for m in self.snapshot():
            if m.topic.startswith(unit_base):
                ledger.on_message(m.topic[len(unit_base):], m.payload)
        return ledger

    def wait_for(self, predicate: Callable[[list[Message]], Any], timeout: float) -> Any:
        """Block until ``predicate(messages)`` is truthy; return it (``None`` on timeout)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                result = predicate(self.messages)
                if result:
                    return result
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    def wait_message(self, predicate: Callable[[Message], bool], timeout: float, start: int = 0) -> Message | None:
        """The first message from index ``start`` on that satisfies ``predicate``; None on timeout."""
        deadline = time.monotonic() + timeout
        i = start
        with self._cond:
            while True:
                while i < len(self.messages):
                    if predicate(self.messages[i]):
                        return self.messages[i]
                    i += 1
                left = deadline - time.monotonic()
                if left <= 0:
                    return None
                self._cond.wait(left)

    # ---------------------------------------------------------- publishing

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False, wait: bool = True) -> bool:
        """Publish (under the base, if any); with ``wait``, True once the broker acknowledged it."""
        info = self.client.publish(self.base + topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS and info.rc != paho.MQTT_ERR_NO_CONN:
            return False
        if not wait:
            return True
        try:
            info.wait_for_publish(PUBLISH_WAIT_S)
        except RuntimeError:  # not connected: paho keeps it queued and sends it on reconnect
            return False
        return info.is_published()


def _no_delay(client: paho.Client, userdata: Any, sock: Any) -> None:
    """No Nagle on the recorder's socket: a call must not wait for the ACK of our last PUBACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass
