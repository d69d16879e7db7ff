"""pyserial URL handler ``gpsd://host:port[/device]``: raw NMEA relayed by gpsd.

Why: when gpsd owns the receiver (to feed chrony time through shared memory)
the agent cannot open the serial port too. gpsd will relay the receiver's
sentences unchanged to a client that asks with ``?WATCH={"raw":1}``, so this
handler is pyserial's ``socket://`` transport plus that one request, sent
as soon as the connection opens. The agent's NMEA reader then sees the same
byte stream it would read from the port, preceded by gpsd's few JSON banner
lines (``{"class":"VERSION",...}``), which are not NMEA and which the framer
drops like any other noise.

Defaults: host 127.0.0.1, port 2947. A path selects one device when gpsd
manages several (``gpsd://127.0.0.1:2947/dev/serial0``).
"""

from __future__ import annotations

import json
import urllib.parse

from serial import SerialException
from serial.urlhandler import protocol_socket

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 2947


def watch_command(device: str | None) -> bytes:
    """The ``?WATCH`` request that starts gpsd's raw relay."""
    request: dict[str, object] = {"enable": True, "raw": 1}
    if device:
        request["device"] = device
    return b"?WATCH=" + json.dumps(request, separators=(",", ":")).encode() + b"\n"


def parse_url(url: str) -> tuple[str, int, str | None]:
    """``gpsd://host:port/device`` -> (host, port, device or None)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "gpsd":
        raise SerialException(f"expected gpsd://host[:port][/device], got {url!r}")
    if parts.query:
        raise SerialException(f"gpsd:// URLs take no options, got {parts.query!r}")
    try:
        port = parts.port or DEFAULT_PORT
    except ValueError as exc:
        raise SerialException(f"bad port in {url!r}: {exc}") from None
    return parts.hostname or DEFAULT_HOST, port, (parts.path if parts.path not in ("", "/") else None)


class Serial(protocol_socket.Serial):
    """pyserial ``Serial`` over a gpsd connection that relays raw NMEA."""

    def from_url(self, url: str) -> tuple[str, int]:
        host, port, self._gpsd_device = parse_url(url)
        return host, port

    def open(self) -> None:
        super().open()
        try:
            self.write(watch_command(self._gpsd_device))
        except Exception:
            self.close()
            raise
