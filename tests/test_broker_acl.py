"""The shipped fleet ACL, enforced by a real Mosquitto.

Each module starts Mosquitto from PATH on a free port with the ACL file as
shipped in ``firmware-config/mosquitto/acl`` and a password file hashed by
``mosquitto_passwd`` (``hil.broker.write_password_file``); the TLS test renders the shipped ``umps-fleet.conf``
itself (paths and ports swapped) with certificates made here.

How a refusal is observed: Mosquitto 2.0 answers a publish the ACL refuses
with PUBACK reason 0x87 "Not authorized" (MQTT 5, QoS 1), and grants a
subscription but filters what it delivers by the ACL. So every negative check
is two-fold: the publisher's PUBACK says not authorized, and a subscriber
with full read rights does not get the message, checked *in order*: the same
publisher then sends an allowed control message, and once that one has
arrived the refused one can no longer be on its way (one publisher, one QoS:
MQTT keeps the order).

The broker launcher below is private to this module until the shared test
fixture (``tests/support/broker.py``) lands.
"""

from __future__ import annotations

import getpass
import queue
import shutil
import ssl
import threading
import time
import uuid
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.reasoncodes import ReasonCode

from hil.broker import Broker, free_port, write_password_file
from hil.pki import make_pki

SHIPPED = Path(__file__).resolve().parent.parent / "firmware-config" / "mosquitto"
ACL_FILE = SHIPPED / "acl"
FLEET_CONF = SHIPPED / "umps-fleet.conf"
PASSWORD = "s3cret-pw"
UNIT_A, UNIT_B = "KEN-M-07", "KEN-C-12"
DISPATCH, ADMIN = "dispatch@central", "admin@central"
TIMEOUT = 5.0

UNIT_WRITES = (
    "telemetry", "telemetry/backlog", "status", "online", "alarm", "call/response",
    "call/rejected", "alarm/rejected", "config/result", "config/current", "cmd/result",
)
UNIT_READS = ("call", "config/set", "alarm/ack", "alarm/clear", "cmd")

pytestmark = pytest.mark.skipif(
    shutil.which("mosquitto") is None or shutil.which("mosquitto_passwd") is None,
    reason="mosquitto and mosquitto_passwd are needed on PATH",
)


# ------------------------------------------------------------------ broker


def make_password_file(path: Path, users: list[str]) -> None:
    write_password_file(path, dict.fromkeys(users, PASSWORD))


@pytest.fixture(scope="module")
def plain_broker(tmp_path_factory: pytest.TempPathFactory):
    work = tmp_path_factory.mktemp("acl-broker")
    passwd = work / "passwd"
    make_password_file(passwd, [UNIT_A, UNIT_B, DISPATCH, ADMIN, "+"])
    port = free_port()
    conf = (
        f"per_listener_settings false\n"
        f"listener {port} 127.0.0.1\n"
        f"allow_anonymous false\n"
        f"password_file {passwd}\n"
        f"acl_file {ACL_FILE}\n"
        f"persistence false\n"
        f"log_dest stderr\n"
        f"log_type all\n"
        f"user {getpass.getuser()}\n"
    )
    broker = Broker(work, port=port, config=conf).start()
    yield port
    broker.stop()


# ------------------------------------------------------------------ client


class Client:
    """A paho client that waits for acknowledgements instead of sleeping."""

    def __init__(self, port: int, username: str | None, password: str = PASSWORD, tls: dict | None = None):
        self.username = username
        self.mqtt = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"{username}-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
        )
        if username is not None:
            self.mqtt.username_pw_set(username, password)
        if tls is not None:
            self.mqtt.tls_set(**tls)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._acks: dict[int, ReasonCode | list[ReasonCode]] = {}
        self._cond = threading.Condition()
        self._connack: ReasonCode | None = None
        self._dropped: ReasonCode | None = None
        self.mqtt.on_connect = self._on_connect
        self.mqtt.on_disconnect = self._on_disconnect
        self.mqtt.on_publish = self._on_publish
        self.mqtt.on_subscribe = self._on_subscribe
        self.mqtt.on_message = lambda _c, _u, msg: self.messages.put(msg)
        self.mqtt.connect("127.0.0.1", port, keepalive=30)
        self.mqtt.loop_start()

    def _on_connect(self, _c, _u, _flags, reason_code, _props) -> None:
        with self._cond:
            self._connack = reason_code
            self._cond.notify_all()

    def _on_disconnect(self, _c, _u, _flags, reason_code, _props) -> None:
        with self._cond:
            self._dropped = reason_code
            self._cond.notify_all()

    def _on_publish(self, _c, _u, mid, reason_code, _props) -> None:
        with self._cond:
            self._acks[mid] = reason_code
            self._cond.notify_all()

    def _on_subscribe(self, _c, _u, mid, reason_codes, _props) -> None:
        with self._cond:
            self._acks[mid] = reason_codes
            self._cond.notify_all()

    def connack(self) -> ReasonCode:
        with self._cond:
            done = self._cond.wait_for(lambda: self._connack is not None or self._dropped is not None, TIMEOUT)
            if self._connack is not None:
                return self._connack
            if done:
                raise AssertionError(f"{self.username}: dropped before CONNACK ({self._dropped})")
            raise AssertionError(f"{self.username}: no CONNACK")

    def connected(self) -> "Client":
        code = self.connack()
        assert not code.is_failure, f"{self.username} refused: {code}"
        return self

    def _wait_ack(self, mid: int):
        with self._cond:
            self._cond.wait_for(lambda: mid in self._acks or self._dropped is not None, TIMEOUT)
            if mid not in self._acks:
                raise AssertionError(f"{self.username}: no acknowledgement for mid {mid} ({self._dropped})")
            return self._acks.pop(mid)

    def publish(self, topic: str, payload: bytes = b"{}", retain: bool = False) -> ReasonCode:
        info = self.mqtt.publish(topic, payload, qos=1, retain=retain)
        return self._wait_ack(info.mid)

    def subscribe(self, *topics: str) -> None:
        _, mid = self.mqtt.subscribe([(t, 1) for t in topics])
        codes = self._wait_ack(mid)
        assert all(not c.is_failure for c in codes), codes

    def receive_until(self, topic: str, payload: bytes) -> list[tuple[str, bytes]]:
        """Everything received up to and including (topic, payload)."""
        seen = []
        deadline = time.monotonic() + TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"{self.username}: {topic} {payload!r} not received; got {seen}")
            try:
                msg = self.messages.get(timeout=remaining)
            except queue.Empty:
                continue
            seen.append((msg.topic, msg.payload))
            if (msg.topic, msg.payload) == (topic, payload):
                return seen

    def close(self) -> None:
        self.mqtt.disconnect()
        self.mqtt.loop_stop()


@pytest.fixture
def clients(plain_broker: int):
    made: list[Client] = []

    def connect(username: str | None, password: str = PASSWORD) -> Client:
        client = Client(plain_broker, username, password)
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


def token() -> bytes:
    return uuid.uuid4().hex.encode()


def assert_refused(publisher: Client, topic: str, watcher: Client, control_topic: str) -> None:
    """``publisher`` may not write ``topic``: PUBACK 0x87 and nothing delivered."""
    secret = token()
    code = publisher.publish(topic, secret)
    assert code == ReasonCode(mqtt.PacketTypes.PUBACK, "Not authorized"), f"{publisher.username} -> {topic}: {code}"
    control = token()
    assert not publisher.publish(control_topic, control).is_failure
    seen = watcher.receive_until(control_topic, control)
    assert (topic, secret) not in seen


# ------------------------------------------------------------------- tests


def test_a_unit_writes_its_own_topics(clients) -> None:
    admin = clients(ADMIN).connected()
    admin.subscribe("umps/#")
    unit = clients(UNIT_A).connected()
    for suffix in UNIT_WRITES:
        topic = f"umps/{UNIT_A}/{suffix}"
        payload = token()
        assert not unit.publish(topic, payload).is_failure, topic
        assert (topic, payload) in admin.receive_until(topic, payload)


def test_a_unit_cannot_write_another_units_topics(clients) -> None:
    admin = clients(ADMIN).connected()
    admin.subscribe("umps/#")
    unit_a = clients(UNIT_A).connected()
    control = f"umps/{UNIT_A}/telemetry"
    for suffix in UNIT_WRITES:
        assert_refused(unit_a, f"umps/{UNIT_B}/{suffix}", admin, control)
    # Nor anything outside its own subtree.
    for topic in (f"umps/{UNIT_B}", "umps", "other/topic", f"umps/{UNIT_A}/unknown"):
        assert_refused(unit_a, topic, admin, control)


def test_a_unit_cannot_push_config_commands_calls_or_alarm_acks(clients) -> None:
    admin = clients(ADMIN).connected()
    admin.subscribe("umps/#")
    unit_a = clients(UNIT_A).connected()
    control = f"umps/{UNIT_A}/status"
    for target in (UNIT_A, UNIT_B):
        for suffix in UNIT_READS:
            assert_refused(unit_a, f"umps/{target}/{suffix}", admin, control)


def test_a_unit_reads_its_own_calls_only(clients) -> None:
    unit_a = clients(UNIT_A).connected()
    # Mosquitto grants any subscription and filters delivery by the ACL.
    unit_a.subscribe("umps/#", f"umps/{UNIT_B}/call", f"umps/{UNIT_A}/call")
    unit_b = clients(UNIT_B).connected()
    dispatch = clients(DISPATCH).connected()
    for_b, for_a = token(), token()
    assert not dispatch.publish(f"umps/{UNIT_B}/call", for_b).is_failure
    assert not unit_b.publish(f"umps/{UNIT_B}/telemetry", for_b).is_failure
    assert not dispatch.publish(f"umps/{UNIT_A}/call", for_a).is_failure
    seen = unit_a.receive_until(f"umps/{UNIT_A}/call", for_a)
    assert all(payload != for_b for _, payload in seen), seen


def test_a_unit_receives_every_topic_addressed_to_it(clients) -> None:
    unit_a = clients(UNIT_A).connected()
    unit_a.subscribe(*(f"umps/{UNIT_A}/{suffix}" for suffix in UNIT_READS))
    dispatch = clients(DISPATCH).connected()
    admin = clients(ADMIN).connected()
    senders = {"call": dispatch, "alarm/ack": dispatch, "alarm/clear": dispatch, "config/set": admin, "cmd": admin}
    for suffix, sender in senders.items():
        payload = token()
        assert not sender.publish(f"umps/{UNIT_A}/{suffix}", payload).is_failure
        unit_a.receive_until(f"umps/{UNIT_A}/{suffix}", payload)


def test_dispatch_sends_calls_and_alarm_acks_and_reads_the_fleet(clients) -> None:
    dispatch = clients(DISPATCH).connected()
    dispatch.subscribe("umps/#")
    unit_a = clients(UNIT_A).connected()
    unit_a.subscribe(f"umps/{UNIT_A}/call")
    call = token()
    assert not dispatch.publish(f"umps/{UNIT_A}/call", call).is_failure
    unit_a.receive_until(f"umps/{UNIT_A}/call", call)
    report = token()
    assert not unit_a.publish(f"umps/{UNIT_A}/telemetry", report).is_failure
    dispatch.receive_until(f"umps/{UNIT_A}/telemetry", report)
    for suffix in ("alarm/ack", "alarm/clear", "cmd"):
        assert not dispatch.publish(f"umps/{UNIT_B}/{suffix}", token()).is_failure


def test_dispatch_cannot_push_config_nor_pose_as_a_unit(clients) -> None:
    admin = clients(ADMIN).connected()
    admin.subscribe("umps/#")
    dispatch = clients(DISPATCH).connected()
    control = f"umps/{UNIT_A}/call"
    assert_refused(dispatch, f"umps/{UNIT_A}/config/set", admin, control)
    for suffix in ("telemetry", "status", "alarm", "call/response"):
        assert_refused(dispatch, f"umps/{UNIT_A}/{suffix}", admin, control)
        # The unit patterns apply to every user: the role's own subtree is denied.
        assert_refused(dispatch, f"umps/{DISPATCH}/{suffix}", admin, control)


def test_admin_pushes_config_and_commands_but_sends_no_calls(clients) -> None:
    dispatch = clients(DISPATCH).connected()
    dispatch.subscribe("umps/#")
    unit_b = clients(UNIT_B).connected()
    unit_b.subscribe(f"umps/{UNIT_B}/config/set", f"umps/{UNIT_B}/cmd")
    admin = clients(ADMIN).connected()
    push = token()
    assert not admin.publish(f"umps/{UNIT_B}/config/set", push).is_failure
    unit_b.receive_until(f"umps/{UNIT_B}/config/set", push)
    command = token()
    assert not admin.publish(f"umps/{UNIT_B}/cmd", command).is_failure
    unit_b.receive_until(f"umps/{UNIT_B}/cmd", command)
    control = f"umps/{UNIT_B}/config/set"
    assert_refused(admin, f"umps/{UNIT_B}/call", dispatch, control)
    assert_refused(admin, f"umps/{ADMIN}/telemetry", dispatch, control)


def test_no_anonymous_nor_wrong_password(plain_broker: int) -> None:
    for username, password in ((None, PASSWORD), (UNIT_A, "wrong"), ("KEN-X-99", PASSWORD)):
        client = Client(plain_broker, username, password)
        try:
            assert client.connack().is_failure, (username, password)
        finally:
            client.close()


def test_a_wildcard_username_cannot_widen_the_unit_patterns(clients) -> None:
    # Were "%u" substituted blindly, user "+" would read umps/+/call: every
    # unit's calls. Mosquitto refuses ACL access to such usernames.
    wildcard = clients("+").connected()
    wildcard.subscribe("umps/+/call", "umps/#")
    unit_a = clients(UNIT_A).connected()
    unit_a.subscribe(f"umps/{UNIT_A}/call")
    dispatch = clients(DISPATCH).connected()
    call = token()
    assert not dispatch.publish(f"umps/{UNIT_A}/call", call).is_failure
    unit_a.receive_until(f"umps/{UNIT_A}/call", call)
    # The broker queued anything for "+" before this SUBACK: once it is back,
    # a delivered call would already be in the queue.
    wildcard.subscribe("nothing/here")
    assert wildcard.messages.empty()
    # Nor write as any unit ("umps/+/telemetry" would match them all).
    code = wildcard.publish(f"umps/{UNIT_A}/telemetry", token())
    assert code == ReasonCode(mqtt.PacketTypes.PUBACK, "Not authorized")


# --------------------------------------------------------------- TLS, shipped conf


def render_fleet_conf(work: Path, files: dict[str, Path], ports: dict[int, int]) -> Path:
    """The shipped umps-fleet.conf with its paths and ports swapped for the test's."""
    lines = [f"user {getpass.getuser()}", f"persistence_location {work}/", "log_dest stderr"]
    for line in FLEET_CONF.read_text().splitlines():
        words = line.split()
        if words and words[0] in files:
            line = f"{words[0]} {files[words[0]]}"
        elif words and words[0] == "listener":
            line = f"listener {ports[int(words[1])]} 127.0.0.1"
        elif words and words[0].startswith("#") is False and any(w.startswith("/etc/") for w in words):
            raise AssertionError(f"unmapped path in the shipped conf: {line}")
        lines.append(line)
    conf = work / "umps-fleet.conf"
    conf.write_text("\n".join(lines) + "\n")
    return conf


def test_shipped_fleet_conf_with_unit_certificates(tmp_path: Path) -> None:
    pki = make_pki(tmp_path / "fleet-pki")
    ca_path, broker_crt, broker_key_path = pki.ca_cert, pki.server_cert, pki.server_key
    units = {unit: pki.client(unit) for unit in (UNIT_A, UNIT_B)}
    # A certificate naming unit B, from a CA the broker does not trust.
    rogue = make_pki(tmp_path / "rogue-pki").client(UNIT_B)
    passwd = tmp_path / "passwd"
    make_password_file(passwd, [DISPATCH, ADMIN])
    cert_port, password_port = free_port(), free_port()
    conf = render_fleet_conf(
        tmp_path,
        {"cafile": ca_path, "certfile": broker_crt, "keyfile": broker_key_path,
         "password_file": passwd, "acl_file": ACL_FILE},
        {8883: cert_port, 8884: password_port},
    )
    broker = Broker(tmp_path / "broker", port=cert_port, also_ports=(password_port,), config=conf.read_text()).start()
    made: list[Client] = []

    def connect(port: int, username: str | None, cert: tuple[Path, Path] | None = None) -> Client:
        tls = {"ca_certs": str(ca_path), "tls_version": ssl.PROTOCOL_TLS_CLIENT}
        if cert is not None:
            tls.update(certfile=str(cert[0]), keyfile=str(cert[1]))
        client = Client(port, username, tls=tls)
        made.append(client)
        return client

    try:
        dispatch = connect(password_port, DISPATCH).connected()
        dispatch.subscribe("umps/#")
        # The certificate's CN is the identity; the MQTT username sent is ignored.
        unit_a = connect(cert_port, None, units[UNIT_A]).connected()
        report = token()
        assert not unit_a.publish(f"umps/{UNIT_A}/telemetry", report).is_failure
        dispatch.receive_until(f"umps/{UNIT_A}/telemetry", report)
        assert_refused(unit_a, f"umps/{UNIT_B}/telemetry", dispatch, f"umps/{UNIT_A}/telemetry")
        posing = connect(cert_port, UNIT_B, units[UNIT_A]).connected()
        assert_refused(posing, f"umps/{UNIT_B}/status", dispatch, f"umps/{UNIT_A}/status")
        # No certificate, or one from another CA: no connection on the unit listener.
        for cert in (None, rogue):
            with pytest.raises((ssl.SSLError, OSError, AssertionError)):
                client = connect(cert_port, UNIT_B, cert)
                client.connected()
                # TLS 1.3 reports a refused client certificate after the handshake.
                client.publish(f"umps/{UNIT_B}/telemetry", token())
        # A password user cannot use the certificate listener without a certificate.
        with pytest.raises((ssl.SSLError, OSError, AssertionError)):
            connect(cert_port, ADMIN).connected()
        # And a unit without a password-file entry cannot use the password listener.
        assert connect(password_port, UNIT_A).connack().is_failure
    finally:
        for client in made:
            try:
                client.close()
            except Exception:  # a client whose handshake failed has nothing to close
                pass
        broker.stop()
