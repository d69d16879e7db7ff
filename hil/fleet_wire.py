"""Fleet load on plain sockets: thousands of simulated units, and the rooms' subscribers, on one selector each.

Why
---
The paho-based :class:`hil.fleet.SimUnit` speaks the agent's contract through
a full client per unit; at 5,000 units at 1 Hz its Python bookkeeping (and
the paho subscribers') fills both cores of the rig while the brokers idle,
so the figure measured is the rig's. Here a unit is a socket and a few
counters, and what it sends is bytes framed once (``hil/mqtt_wire.py``):
per report, the agent's own codec (``agent/core/telemetry_cbor.py``, or
JSON) makes the payload with the unit's ``seq`` and time, and a 7-byte header
makes it a PUBLISH. The brokers see the same traffic as from agents.

A unit (:class:`WireUnit`), as the agent does it (docs/mqtt-api.md)
-------------------------------------------------------------------
- its own TCP connection, client id ``umps-<unit>``, its username and
  password (the regional broker's ACL applies), MQTT 5, a persistent session
  (``clean_start`` false, session expiry of a day), last will ``online``
  false (retained, QoS 1);
- at CONNACK: SUBSCRIBE to its ``call`` (QoS 1), its ``online`` birth with
  ``seq_start`` and its ``status`` (retained, QoS 1);
- a telemetry report per period, QoS 1, topic alias 1 once the broker allows
  aliases (the first PUBLISH names the topic, the next ones only the alias),
  payload format 1 for JSON (CBOR goes without, as from the agent); no more
  unacknowledged PUBLISH than the broker's Receive Maximum (the rest wait);
- a ``call`` is acknowledged and answered on ``call/response`` (``received``);
- PINGREQ when it has sent nothing for half its keepalive.

:class:`WireFleet` runs a list of them on one ``selectors`` loop (one thread,
one process), with the same methods as :class:`hil.fleet.Driver` (connect,
report, settle, cpu, close) so the fleet modes take either. Reports are due
on a schedule spread evenly over the period, as there.

A room (:class:`WireSubscriber`)
--------------------------------
One MQTT 5 connection (clean start, Receive Maximum 65,535: the broker may
keep that many QoS 1 messages in flight to it, so a busy moment of the rig
does not push the broker into its per-client queue limit), subscribed to
``<prefix>/+/telemetry`` and ``<prefix>/+/online`` at QoS 1. It reads the
PUBLISH stream in large chunks, acknowledges each batch in one write, and
keeps per unit the ``seq`` received, the births, and the latency (arrival
minus the report's ``ts``) in a :class:`hil.fleet.FleetStats`, which the
fleet modes audit with the one seq ledger (``hil/seq_ledger.py``).

Sockets
-------
Each unit holds one socket in the rig and one in its broker. :func:`raise_nofile`
raises the soft ``RLIMIT_NOFILE`` up to the hard limit; when even the hard
limit is too small, :class:`WireFleet` says so before it opens a socket.
"""

from __future__ import annotations

import datetime as dt
import resource
import selectors
import socket
import threading
import time
from collections import deque

from hil import mqtt_wire as w
from hil import fleet_common
from hil.fleet_common import FleetStats, Schedule, iso, seq_and_latency
from hil.route import Route

CONNECTING_AT_ONCE = 64  # units waiting for their CONNACK at one time (a broker's listen backlog is ~100)
SESSION_EXPIRY_S = 86_400
# The report loop wakes at most this often: the units due meanwhile report together and their PUBACKs are
# read in one turn (one select for many sockets rather than one per report).
TICK_S = 0.005
SOCKETS_SPARE = 64  # files a process needs besides its units' sockets

_ALIAS = w.properties(w.PUBLISH, TopicAlias=1)
_ALIAS_UTF8 = w.properties(w.PUBLISH, TopicAlias=1, PayloadFormatIndicator=1)
_UTF8 = w.properties(w.PUBLISH, PayloadFormatIndicator=1)
_NOTHING = w.NO_PROPERTIES
_ALIASED = {True: _ALIAS, False: _ALIAS_UTF8}  # by "the payload is CBOR": JSON also says UTF-8


def raise_nofile(need: int) -> tuple[int, int]:
    """Raise the soft limit of open files toward ``need`` (never past the hard limit); (soft, hard) after."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = need if hard == resource.RLIM_INFINITY else min(need, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
        soft = want
    return soft, hard


class TooManySockets(RuntimeError):
    """The process may not open as many sockets as it has units (``ulimit -n``)."""


def check_nofile(sockets: int) -> None:
    """Raise the soft limit for ``sockets`` units' sockets, or :class:`TooManySockets` if the hard limit is lower."""
    soft, hard = raise_nofile(sockets + SOCKETS_SPARE)
    if soft != resource.RLIM_INFINITY and soft < sockets + SOCKETS_SPARE:
        raise TooManySockets(f"{sockets} units need {sockets + SOCKETS_SPARE} open files in this process; the hard "
                             f"limit is {hard} (raise it: ulimit -Hn, or LimitNOFILE= in a systemd unit)")


class WireUnit:
    """One simulated unit on a plain socket (see the module docstring)."""

    __slots__ = ("id", "base", "address", "username", "password", "route", "offset_s", "encoding", "keepalive",
                 "sock", "reader", "out", "seq", "next_pid", "inflight", "held", "receive_max", "alias_max",
                 "alias_set", "connected", "published", "acked", "refused", "calls_answered", "last_sent",
                 "disconnects")

    def __init__(self, unit_id: str, host: str, port: int, *, prefix: str, route: Route, offset_s: float,
                 username: str | None = None, password: str | None = None, encoding: str = "json",
                 keepalive: int = 60):
        self.id = unit_id
        self.base = f"{prefix}/{unit_id}/"
        self.address = (host, port)
        self.username, self.password = username, password
        self.route, self.offset_s = route, offset_s
        self.encoding = encoding
        self.keepalive = keepalive
        self.sock: socket.socket | None = None
        self.reader = w.Reader()
        self.out = bytearray()  # what the socket did not take yet
        self.seq = 1
        self.next_pid = 0
        self.inflight: set[int] = set()
        self.held: deque[tuple[int, bytes]] = deque()  # QoS 1 PUBLISH past the broker's Receive Maximum
        self.receive_max = 65535
        self.alias_max = 0
        self.alias_set = False
        self.connected = False
        self.published = self.acked = self.refused = self.calls_answered = self.disconnects = 0
        self.last_sent = 0.0

    def connect_packet(self) -> bytes:
        return w.connect(f"umps-{self.id}", keepalive=self.keepalive, clean_start=False, username=self.username,
                         password=self.password, will=(self.base + "online", b'{"online":false}', 1, True),
                         props=w.properties(w.CONNECT, SessionExpiryInterval=SESSION_EXPIRY_S))

    def _pid(self) -> int:
        pid = self.next_pid
        while True:
            pid = pid % 65535 + 1
            if pid not in self.inflight:
                self.next_pid = pid
                return pid

    def publish(self, topic: str, payload: bytes, props: bytes, *, retain: bool = False) -> bytes:
        """A QoS 1 PUBLISH to send now (empty if it must wait for the broker's window)."""
        pid = self._pid()
        packet = w.publish(topic, payload, qos=1, packet_id=pid, retain=retain, props=props)
        self.published += 1
        if len(self.inflight) >= self.receive_max:
            self.held.append((pid, packet))
            return b""
        self.inflight.add(pid)
        return packet

    def on_connack(self, body: bytes) -> bytes:
        code, props = w.parse_connack(body)
        if code >= 0x80:
            raise ConnectionRefusedError(f"{self.id}: CONNACK reason code {code:#x}")
        self.connected = True
        self.receive_max = int(getattr(props, "ReceiveMaximum", 65535) or 65535)
        self.alias_max = int(getattr(props, "TopicAliasMaximum", 0) or 0)
        self.alias_set = False
        now = iso(dt.datetime.now(dt.timezone.utc))
        return (w.subscribe(self._pid(), [(self.base + "call", 1)])
                + self.publish(self.base + "online", fleet_common.birth(self.seq, now), _UTF8, retain=True)
                + self.publish(self.base + "status", fleet_common.status(now), _UTF8, retain=True))

    def on_puback(self, body: bytes) -> bytes:
        pid = w.packet_id(body)
        if pid in self.inflight:
            self.inflight.discard(pid)
            self.acked += 1
            if w.reason_code(body) >= 0x80:
                self.refused += 1
        if self.held and len(self.inflight) < self.receive_max:
            pid, packet = self.held.popleft()
            self.inflight.add(pid)
            return packet
        return b""

    def on_publish(self, first: int, body: bytes) -> bytes:
        """A message for the unit: its ``call``, acknowledged and answered ``received``."""
        topic, pid, payload = w.parse_publish(first, body)
        out = w.puback(pid) if pid else b""
        if topic == self.base + "call":
            answer = fleet_common.call_response(payload, iso(dt.datetime.now(dt.timezone.utc)))
            if answer is not None:
                self.calls_answered += 1
                out += self.publish(self.base + "call/response", answer, _UTF8)
        return out

    def report(self, t: float, now_iso: str) -> bytes:
        """The next telemetry report as a PUBLISH (the JSON report's fields, in the unit's encoding)."""
        cbor = self.encoding == "cbor"
        payload = fleet_common.report(self.id, self.seq, now_iso, self.route.at(t + self.offset_s), self.encoding)
        self.seq += 1
        if self.alias_set:
            return self.publish("", payload, _ALIASED[cbor])
        if self.alias_max >= 1:
            self.alias_set = True
            return self.publish(self.base + "telemetry", payload, _ALIASED[cbor])
        return self.publish(self.base + "telemetry", payload, _NOTHING if cbor else _UTF8)


class WireFleet(Schedule):
    """Simulated units on one selector loop; the methods of :class:`hil.fleet.Driver`."""

    def __init__(self, sims: list[WireUnit], stop: threading.Event | None = None):
        check_nofile(len(sims))
        self.sims = sims
        self.stop = stop or threading.Event()
        self.sel = selectors.DefaultSelector()
        self._cpu0 = time.process_time()
        self._last_ping_check = 0.0
        self._utc: dt.datetime | None = None
        self._utc_iso = ""
        self.errors: list[str] = []

    # ---------------------------------------------------------------- sending

    def _send(self, u: WireUnit, data: bytes) -> None:
        if not data or u.sock is None:
            return
        u.last_sent = time.monotonic()
        if u.out:
            u.out += data
            return
        try:
            sent = u.sock.send(data)
        except BlockingIOError:
            sent = 0
        except OSError as exc:
            self._lost(u, f"send: {exc}")
            return
        if sent < len(data):
            u.out += data[sent:]
            self.sel.modify(u.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, u)

    def _flush(self, u: WireUnit) -> None:
        assert u.sock is not None
        try:
            sent = u.sock.send(u.out)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(u, f"send: {exc}")
            return
        del u.out[:sent]
        if not u.out:
            self.sel.modify(u.sock, selectors.EVENT_READ, u)

    def _lost(self, u: WireUnit, why: str) -> None:
        if u.sock is not None:
            try:
                self.sel.unregister(u.sock)
            except (KeyError, ValueError):
                pass
            u.sock.close()
            u.sock = None
        if u.connected:
            u.disconnects += 1
        u.connected = False
        if len(self.errors) < 20:
            self.errors.append(f"{u.id}: {why}")

    # ---------------------------------------------------------------- reading

    def _read(self, u: WireUnit) -> None:
        assert u.sock is not None
        try:
            data = u.sock.recv(65536)
        except BlockingIOError:
            return
        except OSError as exc:
            self._lost(u, f"recv: {exc}")
            return
        if not data:
            self._lost(u, "closed by the broker")
            return
        try:
            packets = u.reader.feed(data)
            for first, body in packets:
                kind = first >> 4
                if kind == w.PUBACK:
                    self._send(u, u.on_puback(body))
                elif kind == w.PUBLISH:
                    self._send(u, u.on_publish(first, body))
                elif kind == w.CONNACK:
                    self._send(u, u.on_connack(body))
                elif kind == w.DISCONNECT_TYPE:
                    self._lost(u, f"DISCONNECT from the broker, reason {body[:1].hex() or '00'}")
                    return
        except (w.MalformedPacket, ConnectionRefusedError, UnicodeDecodeError) as exc:
            self._lost(u, str(exc))

    def pump(self, timeout: float) -> None:
        """One turn: read and write what is ready, PINGREQ for quiet units once a second."""
        for key, events in self.sel.select(timeout):
            u = key.data
            if events & selectors.EVENT_READ:
                self._read(u)
            if events & selectors.EVENT_WRITE and u.sock is not None:
                self._flush(u)
        now = time.monotonic()
        if now - self._last_ping_check >= 1.0:
            self._last_ping_check = now
            for u in self.sims:
                if u.connected and now - u.last_sent > u.keepalive / 2:
                    self._send(u, w.PINGREQ)

    # ------------------------------------------------------ the Driver's methods

    def connect(self, timeout: float = 15.0) -> int:
        """Connect every unit, a few dozen waiting for their CONNACK at a time; how many are connected."""
        deadline = time.monotonic() + timeout
        pending = deque(self.sims)
        while (pending or self._connecting()) and time.monotonic() < deadline and not self.stop.is_set():
            connecting = self._connecting()
            while pending and connecting < CONNECTING_AT_ONCE:
                connecting += 1
                u = pending.popleft()
                try:
                    sock = socket.create_connection(u.address, timeout=5.0)
                except OSError as exc:
                    self._lost(u, f"connect: {exc}")
                    continue
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setblocking(False)
                u.sock = sock
                self.sel.register(sock, selectors.EVENT_READ, u)
                self._send(u, u.connect_packet())
            self.pump(0.01)
        return sum(u.connected for u in self.sims)

    def _connecting(self) -> int:
        return sum(1 for u in self.sims if u.sock is not None and not u.connected)

    def emit(self, unit: WireUnit, t: float, utc: dt.datetime) -> None:
        if utc is not self._utc:  # one time text for the units due together
            self._utc, self._utc_iso = utc, iso(utc)
        self._send(unit, unit.report(t, self._utc_iso))

    def wait(self, due: float, now: float, end: float) -> None:
        """Every PUBACK that came meanwhile in one turn, then sleep to the next unit due (at least
        :data:`TICK_S`: the units due meanwhile report together)."""
        self.pump(0.0)
        time.sleep(max(0.0, min(max(due, now + TICK_S), end) - time.monotonic()))

    def close(self) -> None:
        for u in self.sims:
            if u.sock is not None:
                if u.connected and not u.out:
                    try:
                        u.sock.send(w.DISCONNECT)  # a clean stop: the broker drops the will
                    except OSError:
                        pass
                u.connected = False
                self._lost(u, "closed")
        self.sel.close()


class WireSubscriber:
    """A room on one MQTT 5 connection: every unit's reports and births, timed (see the module docstring)."""

    def __init__(self, host: str, port: int, prefix: str, *, username: str | None = None,
                 password: str | None = None, sys_topics: bool = False, arrivals: bool = False,
                 timeout: float = 10.0):
        self.stats = FleetStats()
        self.prefix = prefix + "/"
        self.arrivals = arrivals  # keep each report's arrival time per unit (intervals), not only its seq
        self.reader = w.Reader()
        self.bad = 0  # telemetry without a readable seq
        self._early: list[tuple[int, bytes]] = []  # packets read while waiting for CONNACK or SUBACK
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.sendall(w.connect(f"umps-hil-fleet-sub-{id(self):x}", keepalive=60, clean_start=True,
                                    username=username, password=password,
                                    props=w.properties(w.CONNECT, ReceiveMaximum=65535)))
        first, body = self._expect(w.CONNACK)
        code, _props = w.parse_connack(body)
        if code >= 0x80:
            raise ConnectionRefusedError(f"subscriber refused: CONNACK reason code {code:#x}")
        filters = [(f"{prefix}/+/telemetry", 1), (f"{prefix}/+/online", 1)]
        if sys_topics:
            filters += [("$SYS/broker/clients/connected", 0), ("$SYS/broker/publish/messages/received", 0),
                        ("$SYS/broker/publish/messages/sent", 0)]
        self.sock.sendall(w.subscribe(1, filters))
        first, body = self._expect(w.SUBACK)
        codes = body[3:] if len(body) > 2 else b""  # packet id, an empty property block, the reason codes
        if any(c >= 0x80 for c in codes[:2]):
            raise PermissionError(f"subscriber: SUBSCRIBE refused ({codes.hex()})")
        self.sock.settimeout(None)
        self.sel = selectors.DefaultSelector()
        self.sel.register(self.sock, selectors.EVENT_READ)
        self._last_ping = time.monotonic()
        acks: list[bytes] = []
        for first, body in self._early:
            self._on_packet(first, body, acks)
        if acks:
            self.sock.sendall(b"".join(acks))

    def _expect(self, kind: int) -> tuple[int, bytes]:
        while True:
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("the broker closed the subscriber's connection")
            for first, body in self.reader.feed(data):
                if first >> 4 == kind:
                    return first, body
                self._early.append((first, body))

    def fileno(self) -> int:
        return self.sock.fileno()

    def pump(self, timeout: float) -> None:
        """Read what is ready (waiting at most ``timeout``), acknowledge it in one write."""
        if self.sel.select(timeout):
            data = self.sock.recv(1 << 20)
            if not data:
                raise ConnectionError("the broker closed the subscriber's connection")
            acks: list[bytes] = []
            for first, body in self.reader.feed(data):
                self._on_packet(first, body, acks)
            if acks:
                self.sock.sendall(b"".join(acks))
                self._last_ping = time.monotonic()
        if time.monotonic() - self._last_ping > 20:
            self.sock.sendall(w.PINGREQ)
            self._last_ping = time.monotonic()

    def _on_packet(self, first: int, body: bytes, acks: list[bytes]) -> None:
        if first >> 4 != w.PUBLISH:
            return
        topic, pid, payload = w.parse_publish(first, body)
        if pid:
            acks.append(w.puback(pid))
        now = time.monotonic()
        s = self.stats
        if topic.startswith("$SYS/"):
            name = topic.removeprefix("$SYS/broker/")
            text = payload.decode(errors="replace")
            s.sys[name] = text
            if name.startswith("publish/messages/") and text.isdigit():
                s.counters.setdefault(name, []).append((now, int(text)))
            return
        unit, _, leaf = topic[len(self.prefix):].partition("/")
        if leaf == "online":
            s.births.setdefault(unit, []).append(payload)
            return
        if leaf != "telemetry":
            return
        seq, latency = seq_and_latency(payload)
        s.received += 1
        if s.first is None:
            s.first = now
        s.last = now
        if isinstance(seq, int):
            s.seqs.setdefault(unit, []).append(seq)
        else:
            self.bad += 1
        if latency is not None:
            s.latencies.append(latency)
        if self.arrivals:
            s.per_unit.setdefault(unit, []).append(now)

    def close(self) -> None:
        try:
            self.sock.sendall(w.DISCONNECT)
        except OSError:
            pass
        self.sel.close()
        self.sock.close()


def serve(sub: WireSubscriber, stop: threading.Event) -> threading.Thread:
    """Run ``sub`` on a thread of its own until ``stop`` (the single-broker fleet mode)."""
    def loop() -> None:
        while not stop.is_set():
            sub.pump(0.1)

    thread = threading.Thread(target=loop, name="fleet-wire-sub", daemon=True)
    thread.start()
    return thread
