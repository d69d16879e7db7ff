"""Regional brokers bridged to a central one, built from the shipped configuration.

Theory of operation
-------------------
A national fleet runs one Mosquitto per region (its units and its regional
dispatch room) and a central one (command and the fleet admins), each region
bridged to the centre by Mosquitto's own bridge (``fleet/README.md``).
:class:`Topology` starts that on one machine from the very files an installer
copies, with only what must differ on a laptop swapped in, line by line:

- regional broker: ``firmware-config/mosquitto/umps-fleet.conf`` + ``acl``
  (the fleet broker as it is) and ``fleet/mosquitto/umps-bridge.conf`` with
  ``REGION`` replaced and the central address pointed at a :class:`Cable`;
- central broker: ``fleet/mosquitto/central.conf`` + ``acl-central`` with one
  bridge block per region;
- paths (certificates, ACL, password file, persistence) and listener ports
  are the test's; any other ``/etc/`` path left in a shipped file is an
  error, so a new file reference cannot go unnoticed;
- one addition: a loopback listener without TLS on every broker, for the
  rig's own simulated units and consoles (Python TLS for thousands of
  simulated units would measure the rig, not the brokers). Bridges keep the
  shipped mutual TLS. ACLs and passwords apply on that listener too.

A :class:`Cable` (a TCP forwarder the rig can cut, refusing connections as a
dead link does) sits between each regional broker and the centre, so a test
cuts one region's bridge while the brokers keep running.
"""

from __future__ import annotations

import getpass
import os
import re
import secrets
import socket
import threading
from dataclasses import dataclass, field
from pathlib import Path

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion

from hil.broker import Broker, free_port, write_password_file
from hil.fleet_wire import raise_nofile
from hil.pki import TlsFiles, make_pki

ROOT = Path(__file__).resolve().parents[1]
FIRMWARE = ROOT / "firmware-config" / "mosquitto"
FLEET = ROOT / "fleet" / "mosquitto"
UNIT_LISTENER, PASSWORD_LISTENER = 8883, 8884


def render(text: str, *, files: dict[str, Path | str], ports: dict[int, int], words: dict[str, str]) -> list[str]:
    """A shipped Mosquitto file with its paths, listener ports and named words swapped."""
    for old, new in words.items():
        text = text.replace(old, new)
    out = []
    for line in text.splitlines():
        parts = line.split()
        if parts and parts[0] in files:
            line = f"{parts[0]} {files[parts[0]]}"
        elif parts and parts[0] == "listener":
            line = f"listener {ports[int(parts[1])]} 127.0.0.1"
        elif parts and not parts[0].startswith("#") and any(p.startswith("/etc/") for p in parts):
            raise ValueError(f"a path of the shipped file is not mapped for the rig: {line}")
        out.append(line)
    return out


class Cable:
    """A TCP forwarder the rig can cut (a regional broker to the centre) and that counts bytes each way."""

    def __init__(self, target: tuple[str, int]):
        self.target = target
        self.port = free_port()
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.cut_count = 0
        self.bytes = {"up": 0, "down": 0}  # region -> centre, centre -> region (TLS included)

    def connect(self) -> "Cable":
        """Carry traffic (again): accept connections on the same port."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        listener.settimeout(0.2)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), name="cable", daemon=True)
        self._thread.start()
        return self

    def cut(self) -> None:
        """The link is gone: open connections are closed and new ones refused."""
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
        if self._thread is not None:
            self._thread.join(2.0)
        with self._lock:
            socks, self._socks = self._socks, []
        for s in socks:
            _close(s)
        self.cut_count += 1

    def _accept(self, listener: socket.socket) -> None:
        while self._listener is listener:
            try:
                client, _ = listener.accept()
            except OSError:
                continue
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                _close(client)
                continue
            upstream.settimeout(None)
            with self._lock:
                self._socks += [client, upstream]
            for a, b, way in ((client, upstream, "up"), (upstream, client, "down")):
                threading.Thread(target=self._pump, args=(a, b, way), name="cable-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, way: str) -> None:
        try:
            while data := src.recv(65536):
                with self._lock:  # two pumps per connection, several connections
                    self.bytes[way] += len(data)
                dst.sendall(data)
        except OSError:
            pass
        _close(src)
        _close(dst)


def _close(s: socket.socket) -> None:
    try:
        s.shutdown(socket.SHUT_RDWR)
    except OSError:
        pass
    s.close()


class ShippedBroker(Broker):
    """A rig broker whose configuration is a rendered shipped file (see the module docstring)."""

    def __init__(self, workdir: Path, lines: list[str], *, rig_port: int, bridge: list[str] = ()):
        super().__init__(workdir, port=rig_port)
        self.lines = lines
        self.bridge = list(bridge)  # bridge options end the file (the rig's listener is a general option)

    def config_text(self) -> str:
        head = [f"persistence_location {self.workdir}/", "log_dest stderr"]
        if os.geteuid() == 0:
            head.append("user root")
        else:
            head.append(f"user {getpass.getuser()}")
        rig = [f"listener {self.port} 127.0.0.1", "protocol mqtt"]
        return "\n".join(head + self.lines + rig + self.bridge) + "\n"


@dataclass
class Region:
    name: str
    broker: ShippedBroker
    cable: Cable
    dispatch: str  # the regional dispatch account

    @property
    def address(self) -> tuple[str, int]:
        return self.broker.address


@dataclass
class Topology:
    """``regions`` regional brokers bridged to one central broker, on loopback."""

    workdir: Path
    regions: int = 3
    units: list[str] = field(default_factory=list)  # unit ids that get a password on every regional broker
    password: str = field(default_factory=lambda: secrets.token_urlsafe(12))
    central: ShippedBroker | None = None
    region_list: list[Region] = field(default_factory=list)
    pki: TlsFiles | None = None

    CENTRAL_DISPATCH = "dispatch@central"

    def start(self) -> "Topology":
        # Every unit holds a socket in its regional broker, which inherits this process's limit of open files.
        raise_nofile(len(self.units) + 1024)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.pki = make_pki(self.workdir / "pki")
        names = [f"region{i + 1}" for i in range(self.regions)]
        self.central = self._central(names).start()
        for name in names:
            region = self._region(name)
            self.region_list.append(region)
            region.broker.start()
        self.wait_bridges()
        return self

    def wait_bridges(self, timeout: float = 20.0) -> None:
        """Wait until every region's bridge says it is up on the central broker.

        Each bridge publishes ``1`` (retained) on ``umps-bridge/<region>`` when
        it connects; before that, a call from command would not reach it.
        """
        assert self.central is not None
        state: dict[str, bytes] = {}
        cond = threading.Condition()

        def on_message(client: paho.Client, userdata: object, msg: paho.MQTTMessage) -> None:
            with cond:
                state[msg.topic.rsplit("/", 1)[-1]] = bytes(msg.payload)
                cond.notify_all()

        client = paho.Client(CallbackAPIVersion.VERSION2, protocol=MQTTProtocolVersion.MQTTv311)
        client.username_pw_set(self.CENTRAL_DISPATCH, self.password)
        client.on_connect = lambda c, *a: c.subscribe("umps-bridge/+", qos=1)
        client.on_message = on_message
        client.connect(*self.central.address)
        client.loop_start()
        try:
            with cond:
                up = cond.wait_for(lambda: all(state.get(r.name) == b"1" for r in self.region_list), timeout)
        finally:
            client.disconnect()
            client.loop_stop()
        if not up:
            raise RuntimeError(f"bridges not all up after {timeout} s: {state}\n{self.central.log_text()}")

    def stop(self) -> None:
        for region in self.region_list:
            region.broker.stop()
            region.cable.cut()
        if self.central is not None:
            self.central.stop()

    def _central(self, names: list[str]) -> ShippedBroker:
        assert self.pki is not None
        work = self.workdir / "central"
        work.mkdir(parents=True, exist_ok=True)
        acl_text = (FLEET / "acl-central").read_text()
        block = re.search(r"^user bridge@REGION\n(?:topic .*\n)+", acl_text, re.M)
        assert block, "acl-central has no bridge@REGION block"
        blocks = "".join(block.group(0).replace("REGION", n) + "\n" for n in names)
        acl = work / "acl-central"
        acl.write_text(acl_text.replace(block.group(0), blocks))
        passwd = write_password_file(work / "passwd", {self.CENTRAL_DISPATCH: self.password})
        lines = render((FLEET / "central.conf").read_text(), files={
            "cafile": self.pki.ca_cert, "certfile": self.pki.server_cert, "keyfile": self.pki.server_key,
            "password_file": passwd, "acl_file": acl,
        }, ports={UNIT_LISTENER: free_port(), PASSWORD_LISTENER: free_port()}, words={})
        broker = ShippedBroker(work, lines, rig_port=free_port())
        broker.bridge_port = int(next(ln.split()[1] for ln in lines if ln.startswith("listener ")))
        return broker

    def _region(self, name: str) -> Region:
        assert self.pki is not None and self.central is not None
        work = self.workdir / name
        work.mkdir(parents=True, exist_ok=True)
        dispatch = f"dispatch@{name}"
        acl_text = (FIRMWARE / "acl").read_text()
        block = re.search(r"^user dispatch@kenitra\n(?:topic .*\n)+", acl_text, re.M)
        assert block, "the fleet acl has no dispatch@kenitra block to copy"
        acl = work / "acl"
        acl.write_text(acl_text + "\n" + block.group(0).replace("dispatch@kenitra", dispatch))
        passwd = write_password_file(work / "passwd", {dispatch: self.password,
                                                       **dict.fromkeys(self.units, self.password)})
        cable = Cable(("127.0.0.1", self.central.bridge_port)).connect()
        bridge_cert, bridge_key = self.pki.client(f"bridge@{name}")
        files: dict[str, Path | str] = {
            "cafile": self.pki.ca_cert, "certfile": self.pki.server_cert, "keyfile": self.pki.server_key,
            "password_file": passwd, "acl_file": acl,
            "bridge_cafile": self.pki.ca_cert, "bridge_certfile": bridge_cert, "bridge_keyfile": bridge_key,
        }
        ports = {UNIT_LISTENER: free_port(), PASSWORD_LISTENER: free_port()}
        lines = render((FIRMWARE / "umps-fleet.conf").read_text(), files=files, ports=ports, words={})
        lines += render((FLEET / "umps-bridge.conf").read_text(), files=files, ports=ports, words={
            "REGION": name, "central.umps.example:8883": f"127.0.0.1:{cable.port}"})
        bridge_at = next(i for i, ln in enumerate(lines) if ln.startswith("connection "))
        broker = ShippedBroker(work, lines[:bridge_at], rig_port=free_port(), bridge=lines[bridge_at:])
        return Region(name, broker, cable, dispatch)
