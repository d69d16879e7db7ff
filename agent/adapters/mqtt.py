"""The MQTT link: one connection to the fleet broker, kept up, watched and bounded.

This is the only module that imports paho-mqtt. It hides paho's 5,000-line
client (unbounded queues by default, callbacks on its own network thread)
behind a small surface: ``start()``, ``stop()``, ``publish()`` with an ack
callback, and three events for the outside (``on_up``, ``on_down``,
``on_message``).

How it works
------------
A supervisor thread (``mqtt-link``) owns the connection's life:

1. Pick the next broker of ``settings.brokers`` (failover: tried in turn).
2. Build a fresh paho ``Client`` (MQTT 5, or 3.1.1), TLS, credentials, the
   last will (``online`` = ``{"online": false}``, retained), bounded queues.
   A fresh client per connection means paho never re-sends old messages on
   its own: the outbox is the one place that decides what is re-sent.
3. Connect, start paho's network thread, wait for CONNACK (or for the
   connection to close: a broker or a proxy that hangs up during the handshake
   is a failure at once, not after the timeout). A broker that answers
   "unsupported protocol version" to MQTT 5 is retried at once with 3.1.1.
   Failures back off with capped, jittered exponential delays (tenacity, this
   is the only retry loop: paho's own reconnect is off).

   Coming back after coverage returns is what matters to command: a unit
   missing from the map. So while ``waiting()`` says reports are waiting, a
   network failure (no route, refused, closed, no answer) backs off at most
   ``reconnect_waiting_max`` (1 s) instead of ``reconnect_max`` (60 s), and
   each attempt is a short probe: the whole handshake must finish within
   ``connect_probe`` (2 s), except every ``PROBE_FULL_EVERY``-th attempt in a
   row, which waits the full ``connect_timeout`` so that a slow but working
   link still gets through. A broker that *answers* and refuses (bad
   credentials, not authorised) keeps the full back-off: hammering it would
   change nothing.
4. Once up: subscribe to ``subscriptions`` (relative topics, renewed at each
   connect) and wait for the SUBACK, publish the birth message (``online``, retained, payload from
   the ``birth`` callable), call ``on_up(broker)``.
5. Watch the link: if the oldest unacknowledged PUBLISH is older than
   ``ack_timeout`` or the keepalive, whichever is shorter, the link is
   black-holed (a cellular link that stalls without closing): at 1 Hz there
   is always a PUBACK to wait for, so a black hole is seen within one report
   period plus that limit (at most ~1.2x keepalive by default). With nothing in
   flight, paho drops the link when a PINGREQ is not answered; the keepalive
   it is given is 3/4 of ``keepalive`` (:attr:`MqttLink.keepalive_sent`), so
   that takes at most 1.5x ``keepalive`` too. Either way the socket is shut down, every
   in-flight publish is reported ``LOST`` to its ``on_ack``, ``on_down`` is
   called and the loop goes back to 1.

The session is persistent (MQTT 5 ``clean_start=False`` with a session
expiry; 3.1.1 ``clean_session=False``) with a stable client id, so dispatch
calls sent while the unit was offline are delivered when it reconnects.

Every paho callback runs on paho's thread; each is wrapped so that an
exception is logged and counted and never reaches paho's loop.
"""

from __future__ import annotations

import enum
import json
import logging
import socket
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTErrorCode, MQTTProtocolVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from tenacity import RetryError, Retrying, retry_if_exception_type, wait_exponential, wait_random

from agent.core import telemetry_cbor
from agent.core.messages import Birth, Offline

log = logging.getLogger(__name__)

# PUBACK reason codes (MQTT 5) that mean "try again later" rather than "never".
_RETRYABLE_PUBACK = {0x89, 0x97}  # server busy, quota exceeded
_UNSUPPORTED_PROTOCOL = 0x84
OFFLINE_PAYLOAD = json.dumps(Offline(online=False).to_json()).encode()  # b'{"online": false}', the last will


@dataclass(frozen=True, slots=True)
class MqttSettings:
    """Everything the link needs; the composition root maps the TOML config onto it."""

    brokers: tuple[tuple[str, int], ...] = (("127.0.0.1", 1883),)
    prefix: str = "umps"
    client_id: str | None = None  # default "umps-<unit id>"
    username: str | None = None
    password: str | None = None
    tls: bool = False  # implied by tls_ca / tls_cert
    tls_ca: str | None = None
    tls_cert: str | None = None
    tls_key: str | None = None
    keepalive: int = 30
    protocol: str = "5"  # "5" or "3.1.1"
    reconnect_min: float = 1.0
    reconnect_max: float = 60.0
    ack_timeout: float = 20.0
    connect_timeout: float = 10.0
    connect_probe: float = 2.0  # the handshake's limit while reports wait (see the module docstring)
    reconnect_waiting_max: float = 1.0  # back-off cap while reports wait
    max_inflight: int = 100
    max_queued: int = 1000
    session_expiry: int = 7 * 24 * 3600  # MQTT 5: how long the broker keeps our session

    def __post_init__(self) -> None:
        if not self.brokers:
            raise ValueError("at least one broker is needed")
        if self.protocol not in ("5", "3.1.1"):
            raise ValueError(f"protocol must be '5' or '3.1.1', not {self.protocol!r}")
        if bool(self.tls_cert) != bool(self.tls_key):
            raise ValueError("tls_cert and tls_key go together")
        if not 0 < self.reconnect_min <= self.reconnect_max:
            raise ValueError("need 0 < reconnect_min <= reconnect_max")
        if self.max_inflight < 1 or self.max_queued < self.max_inflight:
            raise ValueError("need 1 <= max_inflight <= max_queued")
        if self.keepalive < 5 or self.ack_timeout <= 0 or self.connect_timeout <= 0:
            raise ValueError("keepalive >= 5 s and positive timeouts are needed")

    @property
    def use_tls(self) -> bool:
        return self.tls or bool(self.tls_ca) or bool(self.tls_cert)


class AckResult(enum.Enum):
    ACKED = "acked"  # the broker has it
    REFUSED = "refused"  # the broker said no for good (MQTT 5 reason >= 0x80): do not resend
    LOST = "lost"  # the connection went before the ack, or the broker asked to retry later


AckCallback = Callable[[AckResult], None]


@dataclass(frozen=True, slots=True)
class LinkStats:
    state: str
    broker: str | None
    protocol: str | None
    connects: int
    disconnects: int
    last_down_reason: str | None
    published: int
    acked: int
    refused: int
    lost: int
    received: int
    ignored_inbound: int
    callback_errors: int
    blackholes: int
    in_flight: int


class _ConnectFailed(Exception):
    pass


class _Refused(_ConnectFailed):
    """The broker answered and said no: not a coverage problem."""


PROBE_FULL_EVERY = 5


class _Stopping(Exception):
    pass


@dataclass(eq=False)
class _Session:
    """One connection: its paho client and what is in flight on it."""

    client: paho.Client
    broker: str
    protocol: str
    connack: threading.Event = field(default_factory=threading.Event)
    subscribed: threading.Event = field(default_factory=threading.Event)
    down: threading.Event = field(default_factory=threading.Event)
    connack_code: int | None = None
    connack_reason: str = ""
    down_reason: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    inflight: dict[int, tuple[float, AckCallback | None]] = field(default_factory=dict)
    early_acks: dict[int, AckResult] = field(default_factory=dict)
    closed: bool = False
    alias_max: int = 0  # the broker's Topic Alias Maximum (CONNACK); 0: none
    aliases: dict[str, int] = field(default_factory=dict)  # full topic -> alias, this connection


class MqttLink:
    """The unit's connection to the broker. See the module docstring."""

    def __init__(
        self,
        settings: MqttSettings,
        *,
        unit_id: str,
        on_up: Callable[[str], None],
        on_down: Callable[[str], None],
        on_message: Callable[[str, bytes, bool], None],
        birth: Callable[[], bytes],
        subscriptions: list[str] | tuple[str, ...] = (),
        clock: Callable[[], float] = time.monotonic,
        waiting: Callable[[], bool] = lambda: False,
    ) -> None:
        if not unit_id or any(c in unit_id for c in "/#+"):
            raise ValueError(f"bad unit id {unit_id!r}")
        self.settings = settings
        self.unit_id = unit_id
        self._base = f"{settings.prefix}/{unit_id}/"
        self._client_id = settings.client_id or f"umps-{unit_id}"
        self._on_up = on_up
        self._on_down = on_down
        self._on_message = on_message
        self._birth = birth
        self._subscriptions = tuple(subscriptions)
        self._clock = clock
        self._waiting = waiting
        self._timeouts_in_a_row = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._session: _Session | None = None
        self._up = False
        self._broker_index = 0
        self._protocol_for: dict[str, str] = {}
        self._lock = threading.Lock()  # counters
        self._counts = dict.fromkeys(
            (
                "connects",
                "disconnects",
                "published",
                "acked",
                "refused",
                "lost",
                "received",
                "ignored_inbound",
                "callback_errors",
                "blackholes",
            ),
            0,
        )
        self._last_down_reason: str | None = None
        self._state = "stopped"
        self._goodbye = OFFLINE_PAYLOAD

    # ------------------------------------------------------------ public

    @property
    def connected(self) -> bool:
        return self._up

    @property
    def max_inflight(self) -> int:
        return self.settings.max_inflight

    @property
    def keepalive_sent(self) -> int:
        """The keepalive given to paho and the broker: 3/4 of ``keepalive``. paho sends a PINGREQ
        after that long without traffic and drops the link when no answer came another such
        interval later, so an idle link that stalls is dropped within 1.5 x ``keepalive``."""
        return max(1, int(self.settings.keepalive * 3 / 4))

    def topic(self, relative: str) -> str:
        return self._base + relative

    def start(self) -> None:
        if self._thread is not None:
            raise RuntimeError("link already started")
        self._stop.clear()
        self._state = "connecting"
        self._thread = threading.Thread(target=self._supervise, name="mqtt-link", daemon=True)
        self._thread.start()

    def stop(self, timeout: float = 10.0, *, reason: str | None = None) -> None:
        """Say offline, disconnect and stop the link thread. Raises if it will not stop.

        ``reason`` goes into the retained goodbye (``{"online": false, "reason": "power"}``).
        """
        thread = self._thread
        if thread is None:
            return
        self._goodbye = offline_payload(reason)
        self._stop.set()
        thread.join(timeout)
        if thread.is_alive():
            raise RuntimeError("mqtt link thread did not stop")
        self._thread = None
        self._state = "stopped"

    def publish(
        self,
        topic: str,
        payload: bytes,
        qos: int = 1,
        retain: bool = False,
        on_ack: AckCallback | None = None,
    ) -> bool:
        """Send on the current connection. False if the link is down or paho's queue is full.

        When True, ``on_ack`` is called exactly once, on paho's thread (keep it
        short): ``ACKED`` at PUBACK (QoS 1/2) or once written (QoS 0),
        ``REFUSED`` when the broker rejects it for good, ``LOST`` when the
        connection ends first.
        """
        session = self._session
        if session is None or not self._up or session.closed:
            return False
        full = self._base + topic
        wire_topic, props, alias = full, None, None
        if session.protocol == "5":
            wire_topic, props, alias = publish_properties(session, full, payload)
        try:
            info = session.client.publish(wire_topic, payload, qos=qos, retain=retain, properties=props)
        except (ValueError, TypeError) as exc:
            log.error("mqtt: cannot publish on %s: %s", topic, exc)
            return False
        if info.rc == MQTTErrorCode.MQTT_ERR_QUEUE_SIZE:
            return False
        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS and not (
            info.rc == MQTTErrorCode.MQTT_ERR_NO_CONN and qos > 0
        ):
            return False
        if alias is not None:
            session.aliases.setdefault(full, alias)  # set: later publishes send the alias alone
        with session.lock:
            early = session.early_acks.pop(info.mid, None)
            if early is None and not session.closed:
                session.inflight[info.mid] = (self._clock(), on_ack)
        self._count("published")
        if early is not None:
            self._deliver_ack(on_ack, early)
        elif session.closed:
            # The session ended while we registered: nobody else will answer.
            self._deliver_ack(on_ack, AckResult.LOST)
        return True

    def stats(self) -> LinkStats:
        session = self._session
        with self._lock:
            counts = dict(self._counts)
        return LinkStats(
            state=self._state,
            broker=session.broker if session and self._up else None,
            protocol=session.protocol if session and self._up else None,
            last_down_reason=self._last_down_reason,
            in_flight=len(session.inflight) if session else 0,
            **counts,
        )

    # ---------------------------------------------------- the supervisor

    def _supervise(self) -> None:
        try:
            while not self._stop.is_set():
                retrying = Retrying(
                    stop=lambda _state: self._stop.is_set(),
                    wait=self._backoff,
                    sleep=self._stop.wait,
                    retry=retry_if_exception_type(_ConnectFailed),
                    before_sleep=lambda state: log.warning(
                        "mqtt: connect failed (%s); retrying", state.outcome.exception() if state.outcome else "?"
                    ),
                )
                try:
                    session = retrying(self._connect_next)
                except (RetryError, _Stopping):
                    break
                lasted = self._serve(session)
                if lasted < self.settings.reconnect_max and not self._stop.is_set():
                    # A link that drops soon after it came up must not spin.
                    self._stop.wait(self.settings.reconnect_min)
        except Exception:  # the supervisor must never die silently
            log.exception("mqtt: link supervisor crashed")
            self._state = "failed"
            raise

    def _backoff(self, state: Any) -> float:
        """Exponential from reconnect_min, capped at reconnect_max, plus up to reconnect_min of
        jitter so a fleet does not reconnect in lockstep after a broker restart. While reports
        wait and the failure was the network's, capped at reconnect_waiting_max (and its jitter)."""
        s = self.settings
        outcome = state.outcome.exception() if state.outcome is not None else None
        if self._waiting_guarded() and not isinstance(outcome, _Refused):
            cap = min(s.reconnect_waiting_max, s.reconnect_max)
            return wait_exponential(multiplier=s.reconnect_min, max=cap)(state) + wait_random(0, cap / 4)(state)
        return (wait_exponential(multiplier=s.reconnect_min, max=s.reconnect_max)
                + wait_random(0, s.reconnect_min))(state)

    def _waiting_guarded(self) -> bool:
        try:
            return bool(self._waiting())
        except Exception:  # noqa: BLE001 - a broken callback only costs the short back-off
            self._callback_failed("waiting")
            return False

    def _handshake_limit(self) -> float:
        s = self.settings
        if not self._waiting_guarded() or (self._timeouts_in_a_row + 1) % PROBE_FULL_EVERY == 0:
            return s.connect_timeout
        return min(s.connect_probe, s.connect_timeout)

    def _connect_next(self) -> _Session:
        if self._stop.is_set():
            raise _Stopping()
        host, port = self.settings.brokers[self._broker_index % len(self.settings.brokers)]
        self._broker_index += 1
        broker = f"{host}:{port}"
        protocol = self._protocol_for.get(broker, self.settings.protocol)
        session = self._open(host, port, broker, protocol)
        if session.connack_code == _UNSUPPORTED_PROTOCOL and protocol == "5":
            log.warning("mqtt: %s refuses MQTT 5; falling back to 3.1.1", broker)
            self._protocol_for[broker] = "3.1.1"
            session = self._open(host, port, broker, "3.1.1")
        if session.connack_code != 0:
            raise _Refused(f"{broker} refused the connection: {session.connack_reason}")
        return session

    def _open(self, host: str, port: int, broker: str, protocol: str) -> _Session:
        self._state = "connecting"
        limit = self._handshake_limit()
        client = self._make_client(protocol, limit)
        session = _Session(client=client, broker=broker, protocol=protocol)
        client.user_data_set(session)
        started = self._clock()
        try:
            if protocol == "5":
                props = Properties(PacketTypes.CONNECT)
                props.SessionExpiryInterval = self.settings.session_expiry
                client.connect(host, port, self.keepalive_sent, clean_start=False, properties=props)
            else:
                client.connect(host, port, self.keepalive_sent)
        except (OSError, ssl.SSLError, ValueError) as exc:
            self._close_client(client)
            self._timeouts_in_a_row = self._timeouts_in_a_row + 1 if isinstance(exc, TimeoutError) else 0
            raise _ConnectFailed(f"{broker}: {exc}") from exc
        client.loop_start()
        # CONNACK, or the connection closed before it: either ends the wait.
        deadline = started + limit
        while not session.connack.is_set() and not session.down.is_set():
            left = deadline - self._clock()
            if left <= 0:
                break
            session.connack.wait(min(left, 0.05))
        if not session.connack.is_set() or session.connack_code is None:
            self._shut_socket(client)
            client.loop_stop()
            self._close_client(client)
            if session.down.is_set():
                self._timeouts_in_a_row = 0
                raise _ConnectFailed(f"{broker}: connection closed before CONNACK ({session.down_reason})")
            self._timeouts_in_a_row += 1
            raise _ConnectFailed(f"{broker}: no CONNACK within {limit:g} s")
        self._timeouts_in_a_row = 0
        if session.connack_code != 0:
            client.loop_stop()
            self._close_client(client)
        return session

    def _make_client(self, protocol: str, connect_timeout: float) -> paho.Client:
        v5 = protocol == "5"
        client = paho.Client(
            CallbackAPIVersion.VERSION2,
            client_id=self._client_id,
            protocol=MQTTProtocolVersion.MQTTv5 if v5 else MQTTProtocolVersion.MQTTv311,
            clean_session=None if v5 else False,
            reconnect_on_failure=False,
        )
        client.suppress_exceptions = True  # belt and braces: our callbacks catch already
        client.connect_timeout = connect_timeout
        client.max_inflight_messages_set(self.settings.max_inflight)
        client.max_queued_messages_set(self.settings.max_queued)
        if self.settings.username is not None:
            client.username_pw_set(self.settings.username, self.settings.password)
        if self.settings.use_tls:
            ctx = ssl.create_default_context(cafile=self.settings.tls_ca)
            if self.settings.tls_cert:
                ctx.load_cert_chain(self.settings.tls_cert, self.settings.tls_key)
            client.tls_set_context(ctx)
        client.will_set(self._base + "online", OFFLINE_PAYLOAD, qos=1, retain=True)
        client.on_connect = self._cb_connect
        client.on_disconnect = self._cb_disconnect
        client.on_publish = self._cb_publish
        client.on_message = self._cb_message
        client.on_subscribe = self._cb_subscribe
        client.on_socket_open = _no_delay
        return client

    def _serve(self, session: _Session) -> float:
        """Run one live connection until it drops or stop is asked; returns how long it lasted."""
        client = session.client
        started = self._clock()
        self._session = session
        self._up = True
        self._state = "up"
        self._count("connects")
        log.info("mqtt: connected to %s (MQTT %s)", session.broker, session.protocol)
        if self._subscriptions:
            client.subscribe([(self._base + t, 1) for t in self._subscriptions])
            # "Up" means inbound works too: wait for the SUBACK (bounded).
            if not session.subscribed.wait(self.settings.connect_timeout):
                log.warning("mqtt: no SUBACK from %s within %s s", session.broker, self.settings.connect_timeout)
        birth = self._call_guarded("birth", self._birth)
        if isinstance(birth, bytes):
            client.publish(self._base + "online", birth, qos=1, retain=True)
        self._call_guarded("on_up", self._on_up, session.broker)
        stall_limit = min(self.settings.ack_timeout, float(self.settings.keepalive))
        check = max(0.05, min(1.0, stall_limit / 4))
        while not self._stop.is_set() and not session.down.wait(check):
            age = self._oldest_inflight_age(session)
            if age is not None and age > stall_limit:
                self._count("blackholes")
                session.down_reason = f"no acknowledgement for {age:.1f} s (link black-holed)"
                log.warning("mqtt: %s: %s; dropping the connection", session.broker, session.down_reason)
                self._shut_socket(client)
                session.down.wait(5.0)
                break
        self._up = False
        if self._stop.is_set() and not session.down.is_set():
            self._say_goodbye(session)
        self._shut_socket(client)
        client.loop_stop()
        self._close_client(client)
        reason = session.down_reason or "stopped"
        self._end_session(session)
        self._state = "stopping" if self._stop.is_set() else "down"
        self._last_down_reason = reason
        self._count("disconnects")
        log.info("mqtt: link to %s down: %s", session.broker, reason)
        self._call_guarded("on_down", self._on_down, reason)
        return self._clock() - started

    def _say_goodbye(self, session: _Session) -> None:
        """Clean shutdown: retained offline, then DISCONNECT (so the will is not needed)."""
        client = session.client
        try:
            info = client.publish(self._base + "online", self._goodbye, qos=1, retain=True)
            if info.rc == MQTTErrorCode.MQTT_ERR_SUCCESS:
                info.wait_for_publish(2.0)
            client.disconnect()
            session.down.wait(2.0)
        except (OSError, ValueError, RuntimeError) as exc:
            log.warning("mqtt: clean disconnect failed: %s", exc)
        session.down_reason = session.down_reason or "stopped"

    def _end_session(self, session: _Session) -> None:
        with session.lock:
            session.closed = True
            pending = list(session.inflight.values())
            session.inflight.clear()
            session.early_acks.clear()
        for _sent, on_ack in pending:
            self._count("lost")
            self._deliver_ack(on_ack, AckResult.LOST)

    def _oldest_inflight_age(self, session: _Session) -> float | None:
        with session.lock:
            if not session.inflight:
                return None
            sent, _cb = next(iter(session.inflight.values()))
        return self._clock() - sent

    @staticmethod
    def _shut_socket(client: paho.Client) -> None:
        sock = client.socket()
        if sock is None:
            return
        try:
            # The plain socket method: SSLSocket.shutdown would tear down the
            # TLS object under paho's thread. This just makes paho's select()
            # see the connection end.
            socket.socket.shutdown(sock, socket.SHUT_RDWR)  # type: ignore[arg-type]
        except OSError:
            pass

    @staticmethod
    def _close_client(client: paho.Client) -> None:
        sock = client.socket()
        if sock is not None:
            try:
                sock.close()
            except OSError:
                pass

    # ------------------------------------------- paho callbacks (paho's thread)

    def _cb_connect(self, client: paho.Client, session: _Session, flags: Any, reason: Any, props: Any) -> None:
        try:
            session.connack_code = int(reason.value) if hasattr(reason, "value") else int(reason)
            session.connack_reason = str(reason)
            session.alias_max = int(getattr(props, "TopicAliasMaximum", 0) or 0)
        except Exception:  # noqa: BLE001 - never into paho's loop
            self._callback_failed("on_connect")
            session.connack_code = -1
        finally:
            session.connack.set()

    def _cb_disconnect(self, client: paho.Client, session: _Session, flags: Any, reason: Any, props: Any) -> None:
        try:
            if not session.down_reason:
                session.down_reason = f"disconnected: {reason}"
        except Exception:  # noqa: BLE001
            self._callback_failed("on_disconnect")
        finally:
            session.down.set()

    def _cb_publish(self, client: paho.Client, session: _Session, mid: int, reason: Any, props: Any) -> None:
        try:
            code = int(getattr(reason, "value", 0))
            if code < 0x80:
                result = AckResult.ACKED
            elif code in _RETRYABLE_PUBACK:
                result = AckResult.LOST
            else:
                result = AckResult.REFUSED
                log.warning("mqtt: broker refused a publish: %s", reason)
            with session.lock:
                entry = session.inflight.pop(mid, None)
                if entry is None:
                    if not session.closed:
                        session.early_acks[mid] = result  # publish() has not registered it yet
                    return
            self._count(result.value)
            self._deliver_ack(entry[1], result)
        except Exception:  # noqa: BLE001
            self._callback_failed("on_publish")

    def _cb_subscribe(self, client: paho.Client, session: _Session, mid: int, reasons: Any, props: Any) -> None:
        try:
            refused = [str(r) for r in reasons if getattr(r, "is_failure", False)]
            if refused:
                log.error("mqtt: broker refused subscriptions %s: %s", self._subscriptions, refused)
        except Exception:  # noqa: BLE001
            self._callback_failed("on_subscribe")
        finally:
            session.subscribed.set()

    def _cb_message(self, client: paho.Client, session: _Session, msg: paho.MQTTMessage) -> None:
        try:
            topic = msg.topic
            if not topic.startswith(self._base):
                self._count("ignored_inbound")
                return
            self._count("received")
            self._on_message(topic[len(self._base) :], bytes(msg.payload), bool(msg.retain))
        except Exception:  # noqa: BLE001
            self._callback_failed("on_message")

    # ------------------------------------------------------------ helpers

    def _deliver_ack(self, on_ack: AckCallback | None, result: AckResult) -> None:
        if on_ack is None:
            return
        try:
            on_ack(result)
        except Exception:  # noqa: BLE001
            self._callback_failed("on_ack")

    def _call_guarded(self, name: str, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except Exception:  # noqa: BLE001
            self._callback_failed(name)
            return None

    def _callback_failed(self, name: str) -> None:
        self._count("callback_errors")
        log.exception("mqtt: %s callback raised; the link goes on", name)

    def _count(self, key: str) -> None:
        with self._lock:
            self._counts[key] += 1


def _no_delay(client: paho.Client, userdata: Any, sock: Any) -> None:
    """Send small messages at once: without it a reply written just after a PUBACK
    waits for the broker's delayed ACK (about 40 ms on Linux)."""
    try:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except (OSError, AttributeError):  # not a TCP socket (e.g. a test double)
        pass


def publish_properties(session: _Session, full_topic: str, payload: bytes) -> tuple[str, Properties, int | None]:
    """MQTT 5 PUBLISH properties: topic alias, payload format and content type.

    Returns the topic to send (empty once the alias is set on this
    connection), the properties, and the alias to record once the publish is
    queued. JSON payloads say "UTF-8" (payload format 1). CBOR is bytes (the
    default, not sent); a batch (a CBOR array, on ``telemetry/backlog``) also
    names its content type, ``application/cbor``, which costs 19 bytes: on a
    ~50-byte live report that would be a third of the bill, so a live CBOR
    report is told from JSON by its payload format alone (see docs/mqtt-api.md).
    """
    props = Properties(PacketTypes.PUBLISH)
    if not telemetry_cbor.is_cbor(payload):
        props.PayloadFormatIndicator = 1
    elif telemetry_cbor.is_batch(payload):
        props.ContentType = telemetry_cbor.CONTENT_TYPE
    alias = session.aliases.get(full_topic)
    if alias is not None:
        props.TopicAlias = alias
        return "", props, None
    if len(session.aliases) < session.alias_max:
        alias = len(session.aliases) + 1
        props.TopicAlias = alias
    return full_topic, props, alias


def offline_payload(reason: str | None = None) -> bytes:
    """The ``online`` goodbye of a clean stop; ``reason`` (``power``, ``ignition``) when it has one."""
    if reason is None:
        return OFFLINE_PAYLOAD
    return json.dumps(Offline(online=False, reason=reason).to_json(), separators=(",", ":")).encode()


def birth_payload(*, agent_version: str, config_version: int, config_hash: str, ts: str, seq_start: int,
                  seq_gap: dict[str, int] | None, time_source: str | None = None, durable: bool | None = None,
                  durable_reason: str | None = None) -> bytes:
    """The ``online`` birth message body (JSON, UTF-8; :class:`agent.core.messages.Birth`).

    ``seq_start``: the first telemetry seq of this run; ``seq_gap``: the seq range
    this run declares never sent (``{"from": a, "to": b}``), or null (docs/mqtt-api.md);
    ``durable`` and ``durable_reason``: whether what the unit keeps reaches its card.
    """
    fields: dict[str, Any] = {"time_source": time_source} if time_source is not None else {}
    if durable is not None:
        fields.update(durable=durable, durable_reason=durable_reason)
    body = Birth(online=True, agent_version=agent_version, config_version=config_version, config_hash=config_hash,
                 ts=ts, seq_start=seq_start, seq_gap=seq_gap, **fields)
    return json.dumps(body.to_json(), separators=(",", ":")).encode()
