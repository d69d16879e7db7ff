"""A local TCP proxy that can black-hole a link: stop forwarding without closing.

The rig puts one between the agent and the broker to cut the unit's own link
(a cellular dead zone) while dispatch and the broker stay up; the tests of the
MQTT link use it too (``tests/support/netproxy.py``).

Cellular links stall: the TCP connection stays open but nothing gets through.
``NetProxy`` listens on a free loopback port and forwards each connection to
a target. ``blackhole()`` makes every open connection swallow what it reads
in both directions (the sockets stay open, so neither end sees an error) and
makes new connections black holes too, until ``restore()``: from then on new
connections forward again (the stalled ones stay stalled, like a dead NAT
entry). ``drop_all()`` closes every connection (a clean cut); ``refuse()`` does
that and closes each new connection as soon as it is accepted (a link that is
cut, not stalled), until ``restore()``.

``refuse_mqtt5=True`` makes the proxy act as an MQTT 3.1.1-only broker in
front of a real one: a CONNECT with protocol level 5 is answered with the
3.1.1 CONNACK "unacceptable protocol version" and closed; others pass.
"""

from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass, field

from hil.broker import free_port

_CONNACK_BAD_PROTOCOL_V311 = bytes([0x20, 0x02, 0x00, 0x01])


@dataclass(eq=False)
class _Pair:
    client: socket.socket
    upstream: socket.socket | None
    stalled: bool = False
    closed: threading.Event = field(default_factory=threading.Event)


class NetProxy:
    host = "127.0.0.1"

    def __init__(self, target: tuple[str, int], *, refuse_mqtt5: bool = False) -> None:
        self.target = target
        self.refuse_mqtt5 = refuse_mqtt5
        self.port = free_port()
        self._blackholed = False
        self._refusing = False
        self._pairs: list[_Pair] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((self.host, self.port))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self._thread = threading.Thread(target=self._accept_loop, name="netproxy", daemon=True)
        self.connections = 0
        self.refused_v5 = 0

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def start(self) -> NetProxy:
        self._thread.start()
        return self

    def blackhole(self) -> None:
        with self._lock:
            self._blackholed = True
            for pair in self._pairs:
                pair.stalled = True

    def restore(self) -> None:
        with self._lock:
            self._blackholed = False
            self._refusing = False

    def refuse(self) -> None:
        with self._lock:
            self._refusing = True
        self.drop_all()

    def drop_all(self) -> None:
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            self._close(pair)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5.0)
        self.drop_all()
        self._listener.close()

    # ------------------------------------------------------------ internals

    def _accept_loop(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with self._lock:
            stalled, refusing = self._blackholed, self._refusing
        if refusing:
            client.close()
            return
        upstream = None
        if not stalled:
            try:
                upstream = socket.create_connection(self.target, timeout=5.0)
            except OSError:
                client.close()
                return
        for s in (client, upstream):
            if s is not None:  # a proxy must not add Nagle's wait to what it forwards
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        pair = _Pair(client, upstream, stalled=stalled)
        with self._lock:
            self._pairs.append(pair)
        try:
            if self.refuse_mqtt5 and not stalled and not self._check_protocol(pair):
                return
            self._pump(pair)
        finally:
            self._close(pair)

    def _check_protocol(self, pair: _Pair) -> bool:
        """Read the CONNECT; refuse level 5 like a 3.1.1 broker. False when refused."""
        pair.client.settimeout(5.0)
        first = _read_packet(pair.client)
        if first is None:
            return False
        # CONNECT: fixed header, then "\x00\x04MQTT" and the protocol level byte.
        body = first[_fixed_header_len(first) :]
        level = body[6] if len(body) > 6 else 0
        if level == 5:
            self.refused_v5 += 1
            pair.client.sendall(_CONNACK_BAD_PROTOCOL_V311)
            return False
        assert pair.upstream is not None
        pair.upstream.sendall(first)
        return True

    def _pump(self, pair: _Pair) -> None:
        socks = [pair.client] + ([pair.upstream] if pair.upstream else [])
        try:
            for s in socks:
                s.setblocking(False)
        except OSError:  # the pair was cut (stop, drop) before it got here
            return
        while not self._stop.is_set() and not pair.closed.is_set():
            try:
                readable, _, _ = select.select(socks, [], [], 0.2)
            except (OSError, ValueError):
                return
            for s in readable:
                try:
                    data = s.recv(65536)
                except BlockingIOError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                if pair.stalled:
                    continue  # swallowed: the black hole
                other = pair.upstream if s is pair.client else pair.client
                assert other is not None
                try:
                    other.setblocking(True)
                    other.sendall(data)
                    other.setblocking(False)
                except OSError:
                    return

    def _close(self, pair: _Pair) -> None:
        pair.closed.set()
        for s in (pair.client, pair.upstream):
            if s is None:
                continue
            try:
                s.close()
            except OSError:
                pass
        with self._lock:
            if pair in self._pairs:
                self._pairs.remove(pair)


def _fixed_header_len(packet: bytes) -> int:
    i = 1
    while packet[i] & 0x80:
        i += 1
    return i + 1


def _read_packet(sock: socket.socket) -> bytes | None:
    """One whole MQTT packet (fixed header + remaining length)."""
    try:
        head = _recv_exact(sock, 2)
        length_bytes = bytearray(head[1:])
        while length_bytes[-1] & 0x80:
            length_bytes += _recv_exact(sock, 1)
        length, mult = 0, 1
        for b in length_bytes:
            length += (b & 0x7F) * mult
            mult *= 128
        return head[:1] + bytes(length_bytes) + _recv_exact(sock, length)
    except (OSError, ConnectionError):
        return None


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            raise ConnectionError("closed")
        buf += chunk
    return buf
