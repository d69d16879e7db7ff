"""The rig on the broker: a recorder of everything the unit's topics carry, and the
two people the unit talks to, the dispatcher and the fleet admin.

``BrokerTap`` is one paho client (MQTT 3.1.1, QoS 1, a session the broker
keeps) subscribed to ``<prefix>/<unit>/#``. Every message is kept with its monotonic arrival time,
including what the rig itself publishes (the broker echoes it), so a run's
log shows the conversation in order. Callbacks only append under a lock and
notify; ``wait_for(predicate, timeout)`` blocks on that condition (nothing
polls, nothing sleeps). paho reconnects by itself after the rig stops and
restarts the broker; ``connected`` says whether it is on.

``Dispatcher`` and ``Admin`` build the payloads of the MQTT contract
(``docs/mqtt-api.md``, ``docs/remote-config.md``) and publish them through
the tap: calls (new, update, cancel), alarm acknowledgement and clearing,
config pushes and commands. ``publish_raw`` sends anything, for the invalid
inputs a unit must survive.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

PUBLISH_WAIT_S = 2.0


@dataclass(frozen=True, slots=True)
class Seen:
    mono: float
    topic: str  # relative to the unit's base, or "/" + full topic outside it
    payload: bytes
    retain: bool
    qos: int


class BrokerTap:
    """Record the unit's topics; publish as the rig's peers."""

    _ids = itertools.count(1)

    def __init__(self, host: str, port: int, *, prefix: str, unit_id: str,
                 on_message: Callable[[Seen], None] | None = None):
        self.host, self.port = host, port
        self.unit_id = unit_id
        self.base = f"{prefix}/{unit_id}/"
        self.messages: list[Seen] = []
        self._on_message_cb = on_message
        self._cond = threading.Condition()
        self._subscribed = threading.Event()
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=f"umps-hil-tap-{next(self._ids)}-{id(self):x}",
            protocol=MQTTProtocolVersion.MQTTv311,
            # A session the broker keeps (it persists it across a restart), so after an
            # outage the tap is subscribed the moment the broker is back, before the unit
            # can publish its backlog, and QoS 1 messages wait for it.
            clean_session=False,
        )
        self._client.reconnect_delay_set(0.1, 0.5)
        self._client.on_connect = self._cb_connect
        self._client.on_socket_open = _no_delay
        self._client.on_message = self._cb_message
        self._client.on_subscribe = lambda *a: self._subscribed.set()
        self._client.on_disconnect = lambda *a: self._subscribed.clear()

    # ---------------------------------------------------------- lifecycle

    def start(self, timeout: float = 10.0) -> "BrokerTap":
        self._client.connect(self.host, self.port, keepalive=10)
        self._client.loop_start()
        if not self._subscribed.wait(timeout):
            self.stop()
            raise TimeoutError(f"the rig could not subscribe on {self.host}:{self.port} within {timeout} s")
        return self

    def stop(self) -> None:
        try:
            self._client.disconnect()
        finally:
            self._client.loop_stop()

    @property
    def connected(self) -> bool:
        return self._subscribed.is_set()

    # ---------------------------------------------------------- recording

    def _cb_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        if getattr(flags, "session_present", False):
            # Subscribing again would make the broker resend retained messages as if new.
            self._subscribed.set()
        else:
            client.subscribe(self.base + "#", qos=1)

    def _cb_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        topic = msg.topic[len(self.base):] if msg.topic.startswith(self.base) else "/" + msg.topic
        seen = Seen(time.monotonic(), topic, bytes(msg.payload), bool(msg.retain), msg.qos)
        with self._cond:
            self.messages.append(seen)
            self._cond.notify_all()
        if self._on_message_cb is not None:
            try:
                self._on_message_cb(seen)
            except Exception:  # a progress printer must never kill paho's loop
                pass

    def snapshot(self) -> list[Seen]:
        with self._cond:
            return list(self.messages)

    def wait_for(self, predicate: Callable[[list[Seen]], Any], timeout: float) -> Any:
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

    # ---------------------------------------------------------- publishing

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> bool:
        """Publish under the unit's base; True once the broker acknowledged it."""
        info = self._client.publish(self.base + topic, payload, qos=qos, retain=retain)
        if info.rc != paho.MQTT_ERR_SUCCESS and info.rc != paho.MQTT_ERR_NO_CONN:
            return False
        try:
            info.wait_for_publish(PUBLISH_WAIT_S)
        except RuntimeError:  # not connected: paho keeps it queued and sends it on reconnect
            return False
        return info.is_published()


def _no_delay(client: paho.Client, userdata: Any, sock: Any) -> None:
    """No Nagle on the rig's socket: a call must not wait for the ACK of our last PUBACK."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):
        pass


def utc_now() -> str:
    now = dt.datetime.now(dt.timezone.utc)
    return now.strftime("%Y-%m-%dT%H:%M:%S.") + f"{now.microsecond // 1000:03d}Z"


def _json(body: dict[str, Any]) -> bytes:
    return json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


class Dispatcher:
    """The dispatch centre: calls and the answer to an alarm.

    With ``key`` (an Ed25519 private key whose public key is in the unit's
    ``[security] dispatch_keys``) every message is signed, as dispatch software
    does with :func:`agent.admin_tools.dispatch_request`.
    """

    def __init__(self, tap: BrokerTap, key: Any = None):
        self.tap = tap
        self.key = key

    def call(self, call_id: str, *, priority: int = 2, nature: str = "Contrôle", address: str = "",
             location: dict[str, float] | None = None, details: str | None = None, code: str | None = None) -> bytes:
        body: dict[str, Any] = {"id": call_id, "action": "new", "priority": priority, "nature": nature,
                                "address": address or "Av. Mohammed V, Kénitra", "created": utc_now()}
        for key, value in (("location", location), ("details", details), ("code", code)):
            if value is not None:
                body[key] = value
        return self._send("call", body)

    def update(self, call_id: str, **fields: Any) -> bytes:
        body = {"id": call_id, "action": "update", **{k: v for k, v in fields.items() if v is not None}}
        return self._send("call", body)

    def cancel(self, call_id: str, reason: str | None = None) -> bytes:
        body: dict[str, Any] = {"id": call_id, "action": "cancel"}
        if reason:
            body["reason"] = reason
        return self._send("call", body)

    def alarm_ack(self, alarm_id: int | None = None) -> bytes:
        return self._alarm("alarm/ack", alarm_id)

    def alarm_clear(self, alarm_id: int | None = None) -> bytes:
        return self._alarm("alarm/clear", alarm_id)

    def _alarm(self, topic: str, alarm_id: int | None) -> bytes:
        if self.key is not None:
            return self._send(topic, {"id": alarm_id} if alarm_id is not None else {})
        payload = _json({"id": alarm_id}) if alarm_id is not None else b""
        self.tap.publish(topic, payload)
        return payload

    def _send(self, topic: str, body: dict[str, Any]) -> bytes:
        if self.key is not None:
            from agent.admin_tools import dispatch_request

            body = dispatch_request(self.key, self.tap.unit_id, topic, body)
        payload = _json(body)
        self.tap.publish(topic, payload)
        return payload


class Admin:
    """The fleet admin: configuration pushes and commands (unsigned: the rig's unit has no admin keys)."""

    _cmd_ids = itertools.count(1)

    def __init__(self, tap: BrokerTap):
        self.tap = tap

    def push(self, request_id: str, version: int, config: dict[str, Any] | None) -> bytes:
        payload = _json({"id": request_id, "version": version, "config": config or {}})
        self.tap.publish("config/set", payload)
        return payload

    def command(self, command: str, request_id: str | None = None) -> bytes:
        payload = _json({"id": request_id or f"hil-cmd-{next(self._cmd_ids)}-{int(time.time())}", "command": command})
        self.tap.publish("cmd", payload)
        return payload


def publish_raw(tap: BrokerTap, topic: str, payload: str | dict[str, Any], *, qos: int = 1, retain: bool = False) -> bytes:
    data = payload.encode("utf-8") if isinstance(payload, str) else _json(payload)
    tap.publish(topic, data, qos=qos, retain=retain)
    return data
