"""A real Mosquitto for each test, and a subscriber that records what it sees.

Theory of operation
-------------------
``Broker`` starts ``mosquitto`` from PATH (the test is skipped with a clear
message when it is absent) on a free loopback port, with a configuration file
written for that test: one listener, anonymous access or a password file, an
optional ACL file, optional TLS (server certificate, optional client
certificates), optional persistence directory, and any extra lines. It waits
until the port accepts connections (polling with a deadline), and is stopped
by its pid: SIGTERM, then SIGKILL. ``kill9()`` simulates a crash;
``restart()`` starts it again on the same port with the same configuration
(and so the same persistence file). The broker's log is kept in its directory
and ``log_text()`` returns it for a failing test's message.

``Recorder`` is a plain paho client that subscribes to topics and records
every message; ``wait_for(predicate, timeout)`` blocks on a condition until
the recorded messages satisfy the predicate, and fails with a useful message
otherwise (tests never assert after a bare sleep).

Tests never use a broker that was already running.
"""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from tests.support.certs import TlsFiles


def mosquitto_path() -> str:
    path = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )
    if path is None:
        pytest.skip("mosquitto is not installed (Debian package 'mosquitto'; `make test` installs it)")
    return path


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float) -> bool:
    """Poll until something accepts TCP connections on ``host:port``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def password_line(username: str, password: str, *, iterations: int = 101) -> str:
    """A Mosquitto 2 password file line (``$7$``: PBKDF2-SHA512), as ``mosquitto_passwd`` writes."""
    salt = os.urandom(12)
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"{username}:$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    path.write_text("".join(password_line(u, p) + "\n" for u, p in users.items()))
    path.chmod(0o600)
    return path


@dataclass
class TlsListener:
    """TLS for the broker's listener."""

    files: TlsFiles
    require_certificate: bool = False
    use_identity_as_username: bool = False


class Broker:
    """One Mosquitto process owned by a test."""

    host = "127.0.0.1"

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        allow_anonymous: bool = True,
        password_file: Path | None = None,
        acl_file: Path | None = None,
        tls: TlsListener | None = None,
        persistence: bool = False,
        extra_config: str = "",
        start_timeout: float = 10.0,
    ) -> None:
        self.binary = mosquitto_path()
        self.workdir = Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.allow_anonymous = allow_anonymous
        self.password_file = password_file
        self.acl_file = acl_file
        self.tls = tls
        self.persistence = persistence
        self.extra_config = extra_config
        self.start_timeout = start_timeout
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def config_text(self) -> str:
        lines = [f"listener {self.port} {self.host}", f"allow_anonymous {str(self.allow_anonymous).lower()}"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto' and cannot read the test's files
        if self.password_file:
            lines.append(f"password_file {self.password_file}")
        if self.acl_file:
            lines.append(f"acl_file {self.acl_file}")
        if self.tls:
            lines += [
                f"cafile {self.tls.files.ca_cert}",
                f"certfile {self.tls.files.server_cert}",
                f"keyfile {self.tls.files.server_key}",
                f"require_certificate {str(self.tls.require_certificate).lower()}",
            ]
            if self.tls.use_identity_as_username:
                lines.append("use_identity_as_username true")
        if self.persistence:
            lines += ["persistence true", f"persistence_location {self.workdir}/", "autosave_interval 1"]
        lines += ["max_queued_messages 100000", "log_type all", "log_timestamp true"]
        if self.extra_config:
            lines.append(self.extra_config)
        return "\n".join(lines) + "\n"

    def start(self) -> Broker:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("broker already running")
        self.config_path.write_text(self.config_text())
        log = open(self.log_path, "ab")  # noqa: SIM115 - kept open by the child
        try:
            self.proc = subprocess.Popen(
                [self.binary, "-c", str(self.config_path)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        finally:
            log.close()
        if not wait_port(self.host, self.port, self.start_timeout):
            self.stop()
            raise RuntimeError(f"mosquitto did not accept connections on {self.port}:\n{self.log_text()}")
        return self

    def stop(self, timeout: float = 5.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit in time."""
        proc = self.proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout)
        self.proc = None

    def kill9(self) -> None:
        """A crash: SIGKILL, no goodbye, nothing saved since the last autosave."""
        proc = self.proc
        if proc is None:
            return
        proc.kill()
        proc.wait(5.0)
        self.proc = None

    def restart(self) -> Broker:
        self.stop()
        # The kernel may keep the port a moment after the process is gone.
        deadline = time.monotonic() + 5.0
        while time.monotonic() < deadline:
            try:
                with socket.socket() as s:
                    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                    s.bind((self.host, self.port))
                break
            except OSError:
                time.sleep(0.05)
        return self.start()

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return "(no broker log)"


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


def wait_until(predicate: Callable[[], bool], timeout: float, what: str = "", interval: float = 0.02) -> None:
    """Poll a condition that has no event to wait on (another process, a counter)."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)
