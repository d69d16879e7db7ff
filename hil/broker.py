"""A Mosquitto of the rig's own: started from PATH on a free port, stopped by pid.

Theory of operation
-------------------
``Broker`` starts ``mosquitto`` (from PATH, else ``/usr/sbin``) on a free
loopback port with a configuration file written for this run: one listener,
anonymous access or a password file, an optional ACL file, optional TLS
(server certificate, optional client certificates), optional persistence
directory, and any extra lines. It waits until the port accepts connections
(polling with a deadline) and is stopped by its pid: SIGTERM, then SIGKILL.
``kill9()`` simulates a crash; ``restart()`` starts it again on the same port
with the same configuration (and so the same persistence file). The broker's
log is kept in its directory and ``log_text()`` returns its tail for error
messages.

The rig never uses a broker that happens to be running: it either starts its
own here, or is given one explicitly (``umps-hil run --broker HOST:PORT``).
The test suite's fixtures (``tests/support/broker.py``) build on this module.

Missing Mosquitto raises :class:`BrokerUnavailable` (the tests turn it into a
skip; the command line prints it).
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from hil.wait import poll_until

STOP_TIMEOUT_S = 5.0


class BrokerUnavailable(RuntimeError):
    """No ``mosquitto`` executable could be found."""


def mosquitto_path() -> str:
    path = shutil.which("mosquitto") or next(
        (p for p in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise BrokerUnavailable("mosquitto is not installed (Debian package 'mosquitto'; `make test` installs it)")
    return path


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def wait_port(host: str, port: int, timeout: float) -> bool:
    """Poll until something accepts TCP connections on ``host:port``."""
    return poll_until(lambda: _accepts(host, port), timeout)


def _accepts(host: str, port: int) -> bool:
    try:
        with socket.create_connection((host, port), timeout=0.5):
            return True
    except OSError:
        return False


def _port_free(host: str, port: int) -> bool:
    try:
        with socket.socket() as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            s.bind((host, port))
        return True
    except OSError:
        return False


def mosquitto_passwd_path() -> str:
    path = shutil.which("mosquitto_passwd") or next(
        (p for p in ("/usr/bin/mosquitto_passwd", "/usr/sbin/mosquitto_passwd") if os.access(p, os.X_OK)), None
    )
    if path is None:
        raise BrokerUnavailable("mosquitto_passwd is not installed (Debian package 'mosquitto'; `make test` installs it)")
    return path


def write_password_file(path: Path, users: dict[str, str]) -> Path:
    """A Mosquitto password file for ``users`` (name -> password), hashed by Mosquitto's own tool.

    The plain ``name:password`` lines go into a file only its owner may read, and
    ``mosquitto_passwd -U`` hashes them in place, all users in one run.
    """
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        os.fchmod(out.fileno(), 0o600)
        out.write("".join(f"{user}:{password}\n" for user, password in users.items()))
    done = subprocess.run([mosquitto_passwd_path(), "-U", str(path)], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise RuntimeError(f"mosquitto_passwd -U {path} failed: {(done.stdout + done.stderr).strip()}")
    return path


class ServerTlsFiles(Protocol):
    ca_cert: Path
    server_cert: Path
    server_key: Path


@dataclass
class TlsListener:
    """TLS for the broker's listener."""

    files: ServerTlsFiles
    require_certificate: bool = False
    use_identity_as_username: bool = False


class Broker:
    """One Mosquitto process owned by the rig (or a test)."""

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
        config: str | None = None,
        also_ports: tuple[int, ...] = (),
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
        # A whole configuration given as it is (the fleet broker's own, with its listeners on
        # ``port`` and ``also_ports``) instead of the one written from the options above.
        self.config = config
        self.also_ports = also_ports
        self.start_timeout = start_timeout
        self.config_path = self.workdir / "mosquitto.conf"
        self.log_path = self.workdir / "mosquitto.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    def config_text(self) -> str:
        if self.config is not None:
            return self.config
        lines = [f"listener {self.port} {self.host}", f"allow_anonymous {str(self.allow_anonymous).lower()}"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it drops to 'mosquitto' and cannot read our files
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
        # As the fleet's brokers run (firmware-config/mosquitto/umps-fleet.conf): without it a small
        # message waits behind the peer's delayed ACK of the one before (Nagle), up to 40 ms.
        lines += ["set_tcp_nodelay true", "max_queued_messages 100000", "log_type all", "log_timestamp true"]
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
        deadline = time.monotonic() + self.start_timeout
        for port in (self.port, *self.also_ports):
            if not poll_until(lambda p=port: _accepts(self.host, p) or self.proc.poll() is not None,
                              max(0.0, deadline - time.monotonic())) or self.proc.poll() is not None:
                code = self.proc.poll()
                self.stop()
                said = f"exited with {code}" if code is not None else f"did not accept connections on {port}"
                raise RuntimeError(f"mosquitto {said}:\n{self.log_text()}")
        return self

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
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
        proc.wait(STOP_TIMEOUT_S)
        self.proc = None

    def restart(self) -> Broker:
        self.stop()
        self.wait_port_free()
        return self.start()

    def wait_port_free(self, timeout: float = 5.0) -> None:
        """The kernel may keep the port a moment after the process is gone."""
        poll_until(lambda: _port_free(self.host, self.port), timeout, interval=0.05)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_text(self, tail: int = 4000) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-tail:]
        except OSError:
            return "(no broker log)"
