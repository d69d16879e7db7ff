"""The cellular bill: bytes per telemetry report on the wire, and a 30-day month at 1 Hz.

What it measures
----------------
The unit's own link (``MqttLink`` + ``Uplink`` + ``Outbox``, as the agent
builds them) publishes reports the real core made: ``agent.core.unit.Unit``
fed by the rig's Kénitra route through the NMEA generator and the agent's
GNSS decoder (so the numbers have the receiver's precision, tunnels
included), for both encodings. It reaches a private Mosquitto through a
counting TCP forwarder (``hil.regions.Cable``), which sees exactly what a modem would send and receive
above TCP: MQTT framing included, and TLS records when the listener is TLS
(TLS 1.3, mutual certificates, as on a vehicle). Three phases per run:

- connect: TCP up to the unit's birth and subscriptions acknowledged (with
  the TLS handshake when TLS);
- live: one report at a time, each acknowledged before the next (1 Hz);
- backlog: reports made while the link was down, drained after reconnecting
  (JSON one per PUBLISH; CBOR in batches on ``telemetry/backlog``).

The month is a model built from those measured figures: 30 days x 86,400
reports, 24 reconnects a day (cell changes, NAT timeouts, the modem's own
resets), 45 minutes a day out of coverage (tunnels, underground car parks:
3.1 % of the reports go through the backlog). Keepalive pings cost nothing
while reports flow every second. TCP/IP headers (about 52 bytes per segment
each way) are not in the MQTT figures: the note gives the estimate with them.

The yardstick is a Teltonika Codec 8 AVL record (the record layout of the
public protocol, packed here with ``struct``): 30 bytes a record, 15 bytes of
packet around a batch, and a 4-byte acknowledgement.

Run alone: ``python -m bench.bench_bill [--reports N]``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.common import Figure, Skip, log, mosquitto_binary  # noqa: E402

DAY_S = 86_400
MONTH_DAYS = 30
RECONNECTS_PER_DAY = 24
OUTAGE_MIN_PER_DAY = 45
TCPIP_HEADER = 52  # IPv4 20 + TCP 20 + timestamps 12, per segment
CODEC8_RECORD = struct.calcsize(">QBiiHHBHBBBBBB")  # timestamp, priority, GPS element, minimal IO element
CODEC8_PACKET = 4 + 4 + 1 + 1 + 1 + 4  # preamble, length, codec id, count, count, CRC
CODEC8_ACK = 4


# -------------------------------------------------------- reports from the core


def shift_reports(encoding: str, count: int, *, call_from: int, first_seq: int = 1_000_000) -> list:
    """``count`` telemetry ``Publish`` records from the real core along the Kénitra route at 1 Hz.

    From report ``call_from`` on, the unit is on a call with the siren on, as
    a patrol's day has both.
    """
    from agent.config_validate import parse_config
    from agent.core.events import FixReceived, MessageReceived, SirenChanged, Tick
    from agent.core.gnss import GnssDecoder
    from agent.adapters.alarm_ids import random_alarm_id
    from agent.core.unit import Now, Unit
    from hil.gnss_sources import RouteSource

    start = dt.datetime(2026, 12, 3, 8, 0, tzinfo=dt.timezone.utc)
    stream = RouteSource(start_utc=start, noise_m=2.0).stream(rate_hz=1)
    decoder = GnssDecoder()
    config = parse_config({"unit": {"id": "KEN-M-07", "kind": "motorcycle"}, "telemetry": {"encoding": encoding}})
    t0 = 1000.0

    def now(t: float) -> Now:
        return Now(t0 + t, start + dt.timedelta(seconds=t), True)

    unit = Unit(config, first_seq, now(0), alarm_ids=random_alarm_id)
    out = []
    t = 0.0
    while len(out) < count:
        if len(out) == call_from:
            call = (b'{"id": "C-2026-004217", "action": "new", "priority": 1, "nature": "Accident",'
                    b' "address": "Avenue Mohammed V", "created": "2026-12-03T08:00:00Z"}')
            unit.handle(MessageReceived("call", call, t0 + t), now(t))
            unit.handle(SirenChanged(True, t0 + t), now(t))
        lines, _truth = stream.emit(t)
        events = []
        for fix in decoder.feed(b"".join(lines)):
            events += unit.handle(FixReceived(fix, t0 + t + 0.05), now(t + 0.05))
        events += unit.handle(Tick(t0 + t + 0.3), now(t + 0.3))
        out += [e for e in events if getattr(e, "topic", None) == "telemetry"]
        t += 1.0
    return out[:count]


# -------------------------------------------------------- one run


class _Counter:
    """Bytes each way through a :class:`hil.regions.Cable` (what a modem would count above TCP)."""

    def __init__(self, cable):
        self.cable = cable
        self.port = cable.port

    def counts(self) -> tuple[int, int]:
        return self.cable.bytes["up"], self.cable.bytes["down"]


def measure(encoding: str, tls: bool, live_n: int, backlog_n: int, workdir: Path) -> dict:
    from agent.adapters.mqtt import MqttLink, MqttSettings, birth_payload
    from agent.adapters.outbox import Outbox
    from agent.adapters.uplink import Uplink
    from agent.core.telemetry_cbor import decode_telemetry
    from hil.broker import Broker, TlsListener
    from hil.pki import make_pki
    from hil.regions import Cable
    from hil.wait import wait_until

    reports = shift_reports(encoding, live_n + backlog_n, call_from=2 * live_n // 3)
    pki = make_pki(workdir / "pki") if tls else None
    broker = Broker(workdir / "broker", tls=TlsListener(pki, require_certificate=True) if pki else None).start()
    proxy = _Counter(Cable(broker.address).connect())
    tls_opts = {}
    if pki:
        cert, key = pki.client("KEN-M-07")
        tls_opts = {"tls_ca": str(pki.ca_cert), "tls_cert": str(cert), "tls_key": str(key)}
    settings = MqttSettings(brokers=(("127.0.0.1", proxy.port),), reconnect_min=0.2, reconnect_max=1.0, **tls_opts)
    outbox = Outbox(workdir / "state", commit_interval_s=10.0)
    up = threading.Event()
    holder: dict[str, Uplink] = {}

    def on_up(broker_name: str) -> None:
        holder["uplink"].link_up(broker_name)
        up.set()

    def make_link() -> MqttLink:
        return MqttLink(settings, unit_id="KEN-M-07", on_up=on_up, on_down=lambda r: holder["uplink"].link_down(r),
                        on_message=lambda *a: None, subscriptions=("call", "alarm/ack", "alarm/clear", "config/set", "cmd"),
                        birth=lambda: birth_payload(agent_version="bench", config_version=0, config_hash="0" * 16,
                                                    ts="2026-12-03T08:00:00.000Z", seq_start=0, seq_gap=None))

    link = make_link()
    uplink = Uplink(outbox, link, backlog_rate_limit=None)
    holder["uplink"] = uplink
    try:
        uplink.start()
        link.start()
        wait_until(up.is_set, 20, "the link", 0.002)
        time.sleep(0.3)  # the birth's PUBACK
        connect_up, connect_down = proxy.counts()

        live = reports[:live_n]
        per_report: list[tuple[bool, int]] = []  # (on a call, bytes up)
        for i, rec in enumerate(live, 1):
            sent_before = proxy.counts()[0]
            uplink.submit(rec)
            wait_until(lambda i=i: uplink.stats().acked >= i, 10, "a live report's PUBACK", 0.002)
            on_call = decode_telemetry(rec.payload, unit="KEN-M-07")[0]["call"] is not None
            per_report.append((on_call, proxy.counts()[0] - sent_before))
        live_up, live_down = (a - b for a, b in zip(proxy.counts(), (connect_up, connect_down)))
        # The first PUBLISH of a topic carries its name and sets its alias: steady state is from the second on.
        patrol = [n for on_call, n in per_report[1:] if not on_call]
        on_call = [n for on_call, n in per_report[1:] if on_call]
        assert uplink.stats().sent_live == live_n, uplink.stats()

        link.stop()  # out of coverage: what follows goes to the backlog
        up.clear()
        for rec in reports[live_n:]:
            uplink.submit(rec)
        before = proxy.counts()
        link = make_link()
        uplink._link = link  # the same uplink and outbox, a new connection, as after a reconnect
        link.start()
        wait_until(lambda: uplink.stats().acked >= live_n + backlog_n, 60, "the backlog drained", 0.002)
        time.sleep(0.3)  # the last PUBACK is counted
        end = proxy.counts()
        # The reconnect costs what the first connect cost (same birth and subscriptions); the rest is backlog.
        backlog_up = end[0] - before[0] - connect_up
        backlog_down = end[1] - before[1] - connect_down
        return {
            "encoding": encoding, "tls": tls,
            "payload_mean": sum(len(r.payload) for r in reports) / len(reports),
            "connect_up": connect_up, "connect_down": connect_down,
            "live_up": live_up / live_n, "live_down": live_down / live_n,
            "live_up_patrol": sum(patrol) / len(patrol), "live_up_call": sum(on_call) / len(on_call),
            "backlog_up": backlog_up / backlog_n, "backlog_down": backlog_down / backlog_n,
            "backlog_publishes": link.stats().published, "backlog_reports": backlog_n,
        }
    finally:
        uplink.stop()
        link.stop()
        outbox.close()
        proxy.cable.cut()
        broker.stop()


def month_mb(r: dict) -> float:
    reports = MONTH_DAYS * DAY_S
    backlog = reports * OUTAGE_MIN_PER_DAY / (24 * 60)
    live = reports - backlog
    total = (live * (r["live_up"] + r["live_down"]) + backlog * (r["backlog_up"] + r["backlog_down"])
             + MONTH_DAYS * RECONNECTS_PER_DAY * (r["connect_up"] + r["connect_down"]))
    return total / 1e6


def codec8() -> dict:
    live = CODEC8_PACKET + CODEC8_RECORD
    batch = (CODEC8_PACKET + 64 * CODEC8_RECORD) / 64
    r = {"live_up": live, "live_down": CODEC8_ACK, "backlog_up": batch, "backlog_down": CODEC8_ACK / 64,
         "connect_up": 17 + 2, "connect_down": 1}  # IMEI login and its answer
    return {**r, "month": month_mb(r)}


def run(live_n: int, backlog_n: int) -> list[dict]:
    if mosquitto_binary() is None:
        raise Skip("mosquitto is not installed (Debian package mosquitto)")
    out = []
    for encoding in ("json", "cbor"):
        for tls in (False, True):
            with tempfile.TemporaryDirectory(prefix="bench-bill-") as tmp:
                log(f"bench_bill: {encoding}, {'TLS' if tls else 'plain TCP'}")
                r = measure(encoding, tls, live_n, backlog_n, Path(tmp))
                r["month"] = month_mb(r)
                out.append(r)
    return out


def collect(quick: bool = False) -> dict:
    runs = run(60 if quick else 300, 300 if quick else 1200)
    by = {(r["encoding"], r["tls"]): r for r in runs}
    c8 = codec8()
    figs = []
    for (encoding, tls), r in by.items():
        where = "with TLS" if tls else "before TLS"
        live_target = 60 if encoding == "cbor" and not tls else None
        backlog_target = 25 if encoding == "cbor" and not tls else None
        figs += [
            Figure("Bill", f"{encoding}: live report on patrol, unit → broker, {where}", r["live_up_patrol"], "B",
                   target=live_target, source="#19" if live_target else "", peer=c8["live_up"] if not tls else None,
                   peer_label="Codec 8 record in its own packet", digits=1,
                   note=f"on a call (its id in every report, siren on): {r['live_up_call']:.1f} B; "
                        f"PUBACK back {r['live_down']:.1f} B"),
            Figure("Bill", f"{encoding}: backlog report, unit → broker, {where}", r["backlog_up"], "B",
                   target=backlog_target, source="#19" if backlog_target else "",
                   peer=c8["backlog_up"] if not tls else None, peer_label="Codec 8, 64 records a packet", digits=1,
                   note=f"{r['backlog_reports']} reports in {r['backlog_publishes']} sent; "
                        f"{r['backlog_down']:.2f} B back a report"),
            Figure("Bill", f"{encoding}: 30-day month at 1 Hz, both ways, {where}", r["month"], "MB",
                   peer=c8["month"] if not tls else None, peer_label="Codec 8", digits=1,
                   note=f"reconnect {r['connect_up'] + r['connect_down']:,} B each"),
        ]
    json_tls, cbor_tls = by[("json", True)], by[("cbor", True)]
    reports = MONTH_DAYS * DAY_S
    ip = reports * 2 * TCPIP_HEADER / 1e6
    notes = [
        f"Month model: {MONTH_DAYS} days x 86,400 reports, {RECONNECTS_PER_DAY} reconnects a day, "
        f"{OUTAGE_MIN_PER_DAY} min a day out of coverage (that share of the reports goes through the backlog).",
        f"With TLS, CBOR brings the month from {json_tls['month']:.0f} MB to {cbor_tls['month']:.0f} MB "
        f"({json_tls['month'] / cbor_tls['month']:.1f}x less).",
        f"Not included: TCP/IP headers, about {TCPIP_HEADER} B per segment each way; a live report and its PUBACK "
        f"are two segments, about {ip:.0f} MB a month whatever the encoding. An operator bills IP bytes; "
        "batching is what saves them (one segment for up to 64 reports).",
        "Codec 8 sizes: the public AVL record layout (8-byte time, priority, 15-byte GPS element, a minimal "
        "IO element) packed with struct; its TCP session has no TLS.",
    ]
    return {"title": "The cellular bill: bytes per report and a month at 1 Hz (issue #19)",
            "figures": [f.as_dict() for f in figs], "notes": notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reports", type=int, default=120, help="live reports per run (backlog: 4x)")
    args = ap.parse_args(argv)
    for r in run(args.reports, 4 * args.reports):
        print({k: (round(v, 2) if isinstance(v, float) else v) for k, v in r.items()})
    print("codec8", codec8())
    return 0


if __name__ == "__main__":
    sys.exit(main())
