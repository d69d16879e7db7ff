"""The few MQTT 5 packets the fleet load generator speaks, framed by hand.

Why not paho
------------
A paho client per simulated unit costs tens of microseconds of Python per
message in its own bookkeeping (callbacks, message objects, locks, its
loop). Five thousand of them on a 2-core machine measure the rig, not the
brokers. The fleet rig (``hil/fleet_wire.py``) instead keeps thousands of
plain sockets on one selector and writes each PUBLISH as bytes. No small,
maintained sans-IO MQTT 5 codec is packaged on PyPI (``mqtt-codec`` is
3.1.1 only and unmaintained since 2019; ``amqtt`` and ``gmqtt`` keep their
codecs inside their clients), so this module frames the handful of packets
the rig needs. Property blocks, the one part of MQTT 5 with many cases, are
paho's public :class:`paho.mqtt.properties.Properties`.

What is here (MQTT 5.0, OASIS standard, section 3)
--------------------------------------------------
- :func:`connect` (3.1): client id, clean start, keepalive, username and
  password, a last will, CONNECT properties;
- :func:`publish` (3.3): QoS 0 or 1, retain, a packet id, a property block;
- :func:`puback` (3.4), :func:`subscribe` (3.8), :data:`PINGREQ` (3.12),
  :data:`DISCONNECT` (3.14, normal disconnection: the will is not sent);
- :class:`Reader`: splits a byte stream into packets (fixed header and
  remaining length, 2.1); :func:`parse_publish`, :func:`parse_connack`,
  :func:`packet_id` read what the rig needs of them.

Not here: QoS 2, AUTH, enhanced authentication, anything the agent does not
use. Tests (tests/test_fleet_wire.py) run every packet against a real
Mosquitto and against paho.
"""

from __future__ import annotations

import struct

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

CONNECT, CONNACK, PUBLISH, PUBACK, SUBSCRIBE, SUBACK, PINGRESP, DISCONNECT_TYPE = 1, 2, 3, 4, 8, 9, 13, 14
PINGREQ = b"\xc0\x00"
DISCONNECT = b"\xe0\x00"
NO_PROPERTIES = b"\x00"
MAX_REMAINING = 268_435_455  # the largest remaining length a varint of 4 bytes holds


class MalformedPacket(ValueError):
    """The byte stream is not MQTT (a bad remaining length, a truncated field)."""


def varint(n: int) -> bytes:
    """A Variable Byte Integer (MQTT 5, 1.5.5): 7 bits a byte, least significant first."""
    if not 0 <= n <= MAX_REMAINING:
        raise ValueError(f"{n} does not fit a variable byte integer")
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _str(s: str | bytes) -> bytes:
    data = s.encode() if isinstance(s, str) else s
    if len(data) > 0xFFFF:
        raise ValueError("an MQTT string is at most 65,535 bytes")
    return struct.pack("!H", len(data)) + data


def _packet(first: int, body: bytes) -> bytes:
    return bytes((first,)) + varint(len(body)) + body


def properties(packet_type: int, **values: object) -> bytes:
    """A property block (its length, then the properties), by paho's names: ``TopicAlias=1``."""
    if not values:
        return NO_PROPERTIES
    props = Properties(packet_type)
    for name, value in values.items():
        setattr(props, name, value)
    return props.pack()


def connect(client_id: str, *, keepalive: int, clean_start: bool, username: str | None = None,
            password: str | None = None, will: tuple[str, bytes, int, bool] | None = None,
            props: bytes = NO_PROPERTIES, will_props: bytes = NO_PROPERTIES) -> bytes:
    """CONNECT, MQTT 5. ``will`` is (topic, payload, qos, retain); ``props`` from :func:`properties`."""
    flags = 0x02 if clean_start else 0
    payload = _str(client_id)
    if will is not None:
        topic, message, qos, retain = will
        flags |= 0x04 | (qos << 3) | (0x20 if retain else 0)
        payload += will_props + _str(topic) + _str(message)
    if username is not None:
        flags |= 0x80
        payload += _str(username)
    if password is not None:
        flags |= 0x40
        payload += _str(password)
    head = _str("MQTT") + bytes((5, flags)) + struct.pack("!H", keepalive) + props
    return _packet(0x10, head + payload)


def publish(topic: str | bytes, payload: bytes, *, qos: int = 1, packet_id: int = 0, retain: bool = False,
            props: bytes = NO_PROPERTIES) -> bytes:
    """PUBLISH. An empty ``topic`` with a ``TopicAlias`` property uses an alias already set."""
    first = 0x30 | (qos << 1) | (1 if retain else 0)
    body = _str(topic) + (struct.pack("!H", packet_id) if qos else b"") + props + payload
    return _packet(first, body)


def puback(packet_id: int) -> bytes:
    """PUBACK, success (the reason code and properties left out, 3.4.2.1)."""
    return b"\x40\x02" + struct.pack("!H", packet_id)


def subscribe(packet_id: int, filters: list[tuple[str, int]]) -> bytes:
    """SUBSCRIBE: each filter with its maximum QoS (no other subscription options)."""
    body = struct.pack("!H", packet_id) + NO_PROPERTIES + b"".join(_str(f) + bytes((qos,)) for f, qos in filters)
    return _packet(0x82, body)


class Reader:
    """Splits what a socket gives into whole packets: ``feed(data)`` -> [(first byte, body), ...]."""

    __slots__ = ("buf",)

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        buf = self.buf
        buf += data
        out = []
        i, n = 0, len(buf)
        while n - i >= 2:
            length, shift, j, whole = 0, 0, i + 1, False
            while j < n:
                b = buf[j]
                j += 1
                length |= (b & 0x7F) << shift
                if b < 0x80:
                    whole = True
                    break
                shift += 7
                if shift > 21:
                    raise MalformedPacket("remaining length longer than 4 bytes")
            if not whole or j + length > n:
                break
            out.append((buf[i], bytes(buf[j:j + length])))
            i = j + length
        if i:
            del buf[:i]
        return out


def packet_id(body: bytes) -> int:
    """The packet id that starts a PUBACK, SUBACK or QoS 1 PUBLISH's variable header."""
    if len(body) < 2:
        raise MalformedPacket("no packet id")
    return (body[0] << 8) | body[1]


def reason_code(body: bytes) -> int:
    """A PUBACK's reason code (0, success, when left out)."""
    return body[2] if len(body) > 2 else 0


def _skip_varint(body: bytes, pos: int) -> int:
    length, shift = 0, 0
    while True:
        if pos >= len(body):
            raise MalformedPacket("truncated property length")
        b = body[pos]
        pos += 1
        length |= (b & 0x7F) << shift
        if b < 0x80:
            return pos + length
        shift += 7
        if shift > 21:
            raise MalformedPacket("property length longer than 4 bytes")


def parse_publish(first: int, body: bytes) -> tuple[str, int, bytes]:
    """A PUBLISH's (topic, packet id or 0, payload); its properties are skipped."""
    if len(body) < 2:
        raise MalformedPacket("PUBLISH without a topic")
    tlen = (body[0] << 8) | body[1]
    pos = 2 + tlen
    topic = body[2:pos].decode()
    pid = 0
    if first & 0x06:
        pid = (body[pos] << 8) | body[pos + 1]
        pos += 2
    pos = _skip_varint(body, pos)
    if pos > len(body):
        raise MalformedPacket("PUBLISH properties past its end")
    return topic, pid, body[pos:]


def parse_connack(body: bytes) -> tuple[int, Properties]:
    """A CONNACK's (reason code, properties)."""
    if len(body) < 3:
        raise MalformedPacket("CONNACK too short")
    props, _ = Properties(PacketTypes.CONNACK).unpack(body[2:])
    return body[1], props
