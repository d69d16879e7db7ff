"""The rig on the broker: a recorder of everything the unit's topics carry, and the
two people the unit talks to, the dispatcher and the fleet admin.

``BrokerTap`` is the rig's recorder (``hil.recorder``) on ``<prefix>/<unit>/#``
with a session the broker keeps. Every message is kept with its arrival time,
including what the rig itself publishes (the broker echoes it), so a run's
log shows the conversation in order.

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
import time
from collections.abc import Callable
from typing import Any

from hil.recorder import ClientTls, Message, Recorder


class BrokerTap(Recorder):
    """The recorder on ``<prefix>/<unit>/#``, topics kept relative to the unit; publishes under it."""

    def __init__(self, host: str, port: int, *, prefix: str, unit_id: str,
                 on_message: Callable[[Message], None] | None = None, tls: ClientTls | None = None,
                 login: tuple[str, str] | None = None):
        base = f"{prefix}/{unit_id}/"
        self.unit_id = unit_id
        username, password = login or (None, None)
        super().__init__(host, port, [base + "#"], base=base, client_id=f"umps-hil-tap-{unit_id}-{id(self):x}",
                         tls=tls, username=username, password=password, persistent=True, on_message=on_message)


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

    def alarm_ack(self, alarm_id: str | None = None) -> bytes:
        return self._alarm("alarm/ack", alarm_id)

    def alarm_clear(self, alarm_id: str | None = None) -> bytes:
        return self._alarm("alarm/clear", alarm_id)

    def current_alarm(self) -> str | None:
        """The id of the alarm the unit last said is out (its latest ``alarm`` message), as dispatch
        software keeps it; None when none is out."""
        for message in reversed(self.tap.on("alarm")):
            body = message.json()
            if body is not None and isinstance(body.get("id"), str):
                return body["id"] if body.get("active") else None
        return None

    def _alarm(self, topic: str, alarm_id: str | None) -> bytes:
        # Dispatch answers the alarm it sees: named by its id (a signed answer must name it).
        alarm_id = alarm_id or self.current_alarm()
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

    def command(self, command: str, request_id: str | None = None, trace: str | None = None) -> bytes:
        body = {"id": request_id or f"hil-cmd-{next(self._cmd_ids)}-{int(time.time())}", "command": command}
        if trace is not None:
            body["trace"] = trace
        payload = _json(body)
        self.tap.publish("cmd", payload)
        return payload


def publish_raw(tap: BrokerTap, topic: str, payload: str | dict[str, Any], *, qos: int = 1, retain: bool = False) -> bytes:
    data = payload.encode("utf-8") if isinstance(payload, str) else _json(payload)
    tap.publish(topic, data, qos=qos, retain=retain)
    return data
