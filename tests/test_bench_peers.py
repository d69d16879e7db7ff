"""The bench's peers (``bench/peers/``) are real modules, and each one does its job.

Every figure with a peer compares the agent with one of these programs, so
a peer that silently stopped working would make the comparison a lie. Each
is imported here (it compiles, and imports no more than it says), and run
as the bench runs it (``bench.peers.command``) against a real Mosquitto
with the rig's mutual TLS, a real pty, the pigpio emulator: the GNSS peer
publishes a fix read from NMEA, the button peer a status for a press, the
measuring peers print their JSON line.
"""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import subprocess
from pathlib import Path

import pytest

import bench.peers
from hil.broker import TlsListener
from hil.gpio_emulator import PigpioEmulator
from hil.nmea_gen import checksum
from hil.recorder import ClientTls

ROOT = Path(__file__).resolve().parents[1]
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
TOPIC = "umps/PEER-01/telemetry"


def test_every_peer_is_a_module_that_imports_and_has_a_main():
    names = sorted(m.name for m in pkgutil.iter_modules(bench.peers.__path__))
    assert sorted(bench.peers.PEERS) == sorted(set(names) - {"mqtt"})
    for name in bench.peers.PEERS:
        module = importlib.import_module(f"bench.peers.{name}")
        assert callable(module.main) and module.__doc__, name
    with pytest.raises(ValueError, match="no bench peer"):
        bench.peers.command("gpsd")


@pytest.fixture
def tls_broker(broker_factory, tls_files):
    return broker_factory(tls=TlsListener(tls_files, require_certificate=True))


@pytest.fixture
def watcher(tls_broker, tls_files, recorder_factory):
    return recorder_factory(tls_broker, topics=["umps/#"], tls=tls_files, client_cert=tls_files.client("watcher"))


def _start(name: str, *args: str, stdin=None) -> subprocess.Popen[str]:
    proc = subprocess.Popen(bench.peers.command(name, *args), stdin=stdin, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        pytest.fail(f"peer {name} did not start: {line!r} {proc.communicate(timeout=10)[1]}")
    return proc


def _nmea(body: str) -> bytes:
    return f"${body}*{checksum(body)}\r\n".encode("ascii")


def test_the_gnss_peer_publishes_the_fix_it_reads(tls_broker, tls_files, watcher):
    master, slave = os.openpty()
    tls = ClientTls.issue(tls_files, "bench-peer-gnss")
    peer = _start("gnss", os.ttyname(slave), str(tls_broker.port), TOPIC, *tls.argv())
    try:
        os.write(master, b"garbage that is not NMEA\r\n")
        os.write(master, _nmea("GNRMC,102030.00,A,3415.6000,N,00634.8000,W,0.0,0.0,010324,,,A"))
        os.write(master, _nmea("GNGGA,102030.00,3415.6000,N,00634.8000,W,1,09,0.9,12.5,M,0.0,M,,"))
        body = watcher.wait_json(TOPIC, timeout=10.0)
        assert body["seq"] == 1 and body["fix"]["sats"] == 9
        assert body["fix"]["time"] == "2024-03-01T10:20:30.000Z"
        assert (round(body["fix"]["lat"], 3), round(body["fix"]["lon"], 3)) == (34.26, -6.58)
    finally:
        peer.terminate()
        peer.wait(10)
        os.close(master)
        os.close(slave)


def test_the_button_peer_publishes_a_press(tls_broker, tls_files, watcher):
    emulator = PigpioEmulator(boot_pulls={5: "up"}).start()
    tls = ClientTls.issue(tls_files, "bench-peer-button")
    topic = "umps/PEER-01/status"
    peer = _start("button", str(tls_broker.port), str(emulator.port), topic, json.dumps({"en_route": 5}),
                  *tls.argv(), stdin=subprocess.PIPE)
    try:
        emulator.press(5)
        assert watcher.wait_json(topic, timeout=10.0) == {"status": "en_route"}
    finally:
        peer.stdin.close()
        peer.wait(10)
        emulator.stop()


def test_the_measuring_peers_print_their_figures(broker, tmp_path):
    ladder = subprocess.run(bench.peers.command("import_ladder", json.dumps(["import json", "x = b\"x\" * (8 << 20)"])),
                            capture_output=True, text=True, env=ENV, cwd=ROOT, timeout=60, check=True)
    bare, after_json, after_8mib = json.loads(ladder.stdout)
    assert 0 < bare <= after_json and after_8mib - after_json >= 7 * 1024
    for name, args in (("link_rss", (str(broker.port), str(tmp_path / "state"), "1")),
                       ("paho_rss", (str(broker.port), "1"))):
        done = subprocess.run(bench.peers.command(name, *args), capture_output=True, text=True, env=ENV, cwd=ROOT,
                              timeout=60)
        assert done.returncode == 0, done.stderr
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        assert figures["rss_kib"] > 10_000 and figures["rss_first_kib"] > 10_000, (name, figures)
