"""The emulated receiver's connectors: a pseudo-terminal or a TCP port.

**PtyPort** is a USB-serial receiver as the agent meets it: a tty device it
opens with pyserial. ``plug()`` opens a pseudo-terminal (``os.openpty``), puts
it in raw mode (no echo, no CR/LF translation, like a UART) and points a
stable symlink at the slave (``/dev/pts/N`` changes, the symlink does not;
think ``/dev/serial/by-id/...``). The rig keeps the master and a slave
descriptor. ``unplug()`` closes both and removes the symlink: a reader blocked
on the port gets an error or end of file at once, the way a pulled USB
adapter behaves. ``plug()`` again makes a new pty and re-points the same
symlink atomically.

**TcpPort** serves the same byte stream to TCP clients (pyserial
``socket://host:port``, or a ser2net-style bridge). Unplugging drops the
clients and closes the listener; plugging listens again on the same port.

Both write without blocking: if the reader does not keep up, the bytes that do
not fit are dropped and counted, as a UART overruns; nothing ever stalls the
emulator. Bytes the agent writes back (receiver configuration commands) are
kept, bounded, in ``received``. Not thread-safe on their own: the emulator
calls them under its lock.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import tty
from pathlib import Path

log = logging.getLogger(__name__)

RECEIVED_MAX = 64 * 1024


def _keep_tail(buf: bytearray, data: bytes) -> None:
    buf += data
    if len(buf) > RECEIVED_MAX:
        del buf[: len(buf) - RECEIVED_MAX]


class PtyPort:
    """A pseudo-terminal behind a stable symlink."""

    def __init__(self, link_path: str | Path):
        self.link = Path(link_path)
        self.device: str | None = None
        self.dropped = 0
        self.written = 0
        self.received = bytearray()
        self._master: int | None = None
        self._slave: int | None = None

    @property
    def plugged(self) -> bool:
        return self._master is not None

    @property
    def address(self) -> str:
        return str(self.link)

    def plug(self) -> str:
        if self.plugged:
            return str(self.link)
        if self.link.exists() and not self.link.is_symlink():
            raise FileExistsError(f"{self.link} exists and is not a symlink; refusing to replace it")
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            os.set_blocking(master, False)
            device = os.ttyname(slave)
            self.link.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.link.with_name(f".{self.link.name}.{os.getpid()}.tmp")
            if tmp.is_symlink():
                tmp.unlink()
            os.symlink(device, tmp)
            os.replace(tmp, self.link)  # atomic: readers never see no link mid-way
        except BaseException:
            os.close(master)
            os.close(slave)
            raise
        self._master, self._slave, self.device = master, slave, device
        log.info("GNSS emulator plugged: %s -> %s", self.link, device)
        return str(self.link)

    def unplug(self) -> None:
        if not self.plugged:
            return
        for fd in (self._master, self._slave):
            try:
                os.close(fd)  # type: ignore[arg-type]
            except OSError:
                pass
        self._master = self._slave = None
        try:
            if self.link.is_symlink() and os.readlink(self.link) == self.device:
                self.link.unlink()
        except OSError:
            pass
        log.info("GNSS emulator unplugged: %s (was %s)", self.link, self.device)
        self.device = None

    def write(self, data: bytes) -> int:
        if not self.plugged or not data:
            return 0
        try:
            n = os.write(self._master, data)  # type: ignore[arg-type]
        except BlockingIOError:
            n = 0
        except OSError as exc:
            if exc.errno not in (errno.EIO, errno.EAGAIN):
                raise
            n = 0
        self.written += n
        self.dropped += len(data) - n
        return n

    def service(self) -> None:
        """Collect what the agent wrote to the port."""
        if not self.plugged:
            return
        while True:
            try:
                chunk = os.read(self._master, 4096)  # type: ignore[arg-type]
            except (BlockingIOError, OSError):
                return
            if not chunk:
                return
            _keep_tail(self.received, chunk)

    def close(self) -> None:
        self.unplug()


class TcpPort:
    """The NMEA stream on a TCP port, for pyserial ``socket://``."""

    def __init__(self, host: str = "127.0.0.1", port: int = 0, *, max_clients: int = 8):
        self.host = host
        self.port = port
        self.max_clients = max_clients
        self.dropped = 0
        self.written = 0
        self.received = bytearray()
        self._listener: socket.socket | None = None
        self._clients: list[socket.socket] = []

    @property
    def plugged(self) -> bool:
        return self._listener is not None

    @property
    def address(self) -> str:
        return f"socket://{self.host}:{self.port}"

    @property
    def clients(self) -> int:
        return len(self._clients)

    def plug(self) -> int:
        if self.plugged:
            return self.port
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
            sock.listen(self.max_clients)
        except OSError:
            sock.close()
            raise
        sock.setblocking(False)
        self._listener = sock
        self.port = sock.getsockname()[1]
        log.info("GNSS emulator listening on %s", self.address)
        return self.port

    def unplug(self) -> None:
        for c in self._clients:
            _close(c)
        self._clients.clear()
        if self._listener is not None:
            _close(self._listener)
            self._listener = None
            log.info("GNSS emulator closed %s", self.address)

    def service(self) -> None:
        """Accept waiting clients; read (and keep) what they send; drop the gone."""
        if self._listener is None:
            return
        while len(self._clients) < self.max_clients:
            try:
                conn, _ = self._listener.accept()
            except (BlockingIOError, OSError):
                break
            conn.setblocking(False)
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._clients.append(conn)
        if not self._clients:
            return
        readable, _, _ = select.select(self._clients, [], [], 0)
        for c in readable:
            try:
                chunk = c.recv(4096)
            except OSError:
                chunk = b""
            if chunk:
                _keep_tail(self.received, chunk)
            else:
                self._drop(c)

    def write(self, data: bytes) -> int:
        if not data:
            return 0
        self.service()
        sent_max = 0
        for c in list(self._clients):
            try:
                n = c.send(data)
            except BlockingIOError:
                n = 0
            except OSError:
                self._drop(c)
                continue
            self.dropped += len(data) - n
            sent_max = max(sent_max, n)
        self.written += sent_max
        return sent_max

    def _drop(self, c: socket.socket) -> None:
        if c in self._clients:
            self._clients.remove(c)
        _close(c)

    def close(self) -> None:
        self.unplug()


def _close(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    sock.close()
