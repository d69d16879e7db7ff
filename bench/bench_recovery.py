"""Coming back after coverage returns: how soon command sees the unit live again, with the real agent.

How it measures: the scenario rig (``hil.engine``): a private Mosquitto, the
rig's TCP proxy (``hil.netproxy``) between it and the agent, and the rig's
recorder subscribed to the unit's topics directly on the broker. The agent (``python -m agent run``) runs with the
product's defaults for the link (``keepalive_s`` 30, ``ack_timeout_s`` 15,
``reconnect_min_s`` 1, ``reconnect_max_s`` 60) and reports at 1 Hz (no
receiver: reports say "no fix", which changes nothing for the link). Each
round takes the link away for a while, then gives it back:

* **closed**: the proxy closes the connection and every new one as soon as it
  is accepted (a link that is cut: a tunnel with no coverage, a modem reset);
* **black hole**: the proxy stops forwarding without closing anything, old and
  new connections alike (a cellular link that stalls); the old connection stays
  dead after the link comes back, like a lost NAT entry.

Figures: the time from the link coming back (``restore()``) to the first live
``telemetry`` report seen by the watcher; and, for the black hole, the time from
the stall to the agent dropping the connection (its log line "link
black-holed", stamped when the rig reads it from the agent's output pipe).

Run: ``python -m bench.bench_recovery [--quick]``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.common import Figure, Skip, log  # noqa: E402
from hil.broker import BrokerUnavailable  # noqa: E402
from hil.engine import Rig, RigOptions  # noqa: E402

UNIT = "bench-rec-1"
KEEPALIVE_S = 30
TARGET_FIRST_LIVE_S = 3.0


def first_live_after(rig: Rig, t0: float, timeout: float) -> float | None:
    """Seconds from ``t0`` (monotonic) to the first live report command sees after it; None on timeout."""
    assert rig.tap is not None
    seen = rig.tap.wait_message(lambda m: m.topic == "telemetry" and m.mono > t0, timeout)
    return seen.mono - t0 if seen is not None else None


SHORT_BLACKHOLE_S = 8.0  # shorter than the detection: the old connection is still trusted when the link returns


def run(offline_s: list[float]) -> dict:
    # The scenario rig: its own Mosquitto, its TCP proxy between the agent and the broker, its
    # recorder on the broker itself (what command sees); the product's link timings, no receiver.
    rig = Rig(RigOptions(workdir=Path(tempfile.mkdtemp(prefix="bench-recovery-")), unit_id=UNIT,
                         unit_kind="motorcycle", gnss_rate_hz=0, link_proxy=True, quick_timings=False,
                         agent_overrides={"mqtt": {"keepalive_s": KEEPALIVE_S}, "ui": {"enabled": False}}))
    try:
        rig.up()
    except BrokerUnavailable as exc:
        raise Skip(str(exc)) from None
    assert rig.proxy is not None and rig.agent is not None
    result: dict = {"closed": [], "blackhole": [], "short": [], "detect": [], "misses": 0}
    try:
        if first_live_after(rig, time.monotonic() - 30, 30) is None:
            raise RuntimeError("the agent never reported:\n" + rig.agent.output_tail(2000))
        rounds = [(off, mode) for off in offline_s for mode in ("closed", "blackhole")]
        for off, mode in rounds + [(SHORT_BLACKHOLE_S, "short")]:
            # Settle: the backlog of the last round is sent and live reports flow.
            first_live_after(rig, time.monotonic(), 30)
            time.sleep(2.0)
            cut = time.monotonic()
            if mode == "closed":
                rig.proxy.refuse()
            else:
                rig.proxy.blackhole()
            time.sleep(off)
            if mode == "blackhole":
                seen = rig.agent.wait_line("black-holed", cut, 0.0)
                if seen is not None:
                    result["detect"].append(seen - cut)
            rig.proxy.restore()
            back = time.monotonic()
            took = first_live_after(rig, back, 120)
            if took is None:
                result["misses"] += 1
            else:
                result[mode].append(took)
            log(f"offline {off:g} s, {mode}: first live report {took if took is None else round(took, 2)} s "
                f"after the link came back")
    finally:
        rig.down()
        result["log_tail"] = rig.agent.output_tail(1500)
    return result


def collect(quick: bool = False) -> dict:
    offline = [20.0, 30.0] if quick else [20.0, 45.0, 120.0]
    r = run(offline)
    figs = [
        Figure("Link recovery", f"closed link: link back -> first live report at the broker, worst of {len(r['closed'])}",
               max(r["closed"], default=float("nan")), "s", target=TARGET_FIRST_LIVE_S, source="#15", digits=2,
               note="per round: " + ", ".join(f"{x:.2f}" for x in r["closed"])),
        Figure("Link recovery", f"black-holed link: link back -> first live report, worst of {len(r['blackhole'])}",
               max(r["blackhole"], default=float("nan")), "s", target=TARGET_FIRST_LIVE_S, source="#15", digits=2,
               note="per round: " + ", ".join(f"{x:.2f}" for x in r["blackhole"])),
        Figure("Link recovery", f"black hole detected (connection dropped), worst of {len(r['detect'])}",
               max(r["detect"], default=float("nan")), "s", target=1.5 * KEEPALIVE_S, source="#15 (1.5 x keepalive)",
               digits=1, note="per round: " + ", ".join(f"{x:.1f}" for x in r["detect"])),
        Figure("Link recovery", f"black hole shorter than its detection ({SHORT_BLACKHOLE_S:g} s): link back -> "
               "first live report", max(r["short"], default=float("nan")), "s", digits=2,
               note="bounded by the detection, see below"),
    ]
    notes = [
        f"The real agent process with the product's link defaults (keepalive {KEEPALIVE_S} s, `ack_timeout_s` 15, "
        "`reconnect_min_s` 1, `reconnect_max_s` 60), 1 Hz reports, the rig's TCP proxy in front of a private "
        f"Mosquitto, a watcher on the broker itself. Link taken away for {', '.join(f'{x:g}' for x in offline)} s "
        "in turn, each time closed and then black-holed.",
        "Why the first live report comes within a few seconds: while reports wait, a network failure backs off "
        "at most 1 s (plus up to 0.25 s of jitter) instead of growing to 60 s, so an attempt is never far away; "
        "an attempt the proxy closes fails at once (it used to wait out the 10 s CONNACK timeout); and the uplink "
        "is woken the moment the link is up. What is left is the wait for the next attempt, the handshake "
        "and the next 1 Hz report, each under a second here.",
        "Black hole: each attempt is a 2 s probe, so the link coming back is found within one probe and one "
        "back-off (~3 s). Every fifth timed-out attempt in a row waits the full 10 s, so a slow but working "
        "cellular link still connects; a link that comes back during one of those is found up to ~10 s later. "
        "That is the price of never locking out a slow link, and it shows in the worst round.",
        "Detection: at 1 Hz there is always a PUBACK to wait for; the link is dropped when the oldest is older "
        "than `min(ack_timeout_s, keepalive_s)` = 15 s, so about 16 s after the stall (the report in flight "
        "when it began, then the check's 1 s period). The target is 1.5 x keepalive = 45 s.",
        f"A black hole shorter than the detection ({SHORT_BLACKHOLE_S:g} s here) is different: when the link "
        "returns, the unit still trusts its old connection, which the lost NAT entry has killed, and comes back "
        "only once the missing PUBACK drops it, about 15 s after the stall began, plus a probe. Shortening "
        "`ack_timeout_s` would shorten this, at the price of dropping connections that a congested cellular "
        "link (PUBACKs several seconds late while a backlog drains) would have kept; a reconnect is cheap "
        "(persistent session, the outbox re-sends), so a fleet on a good network may set it lower.",
        f"Rounds with no live report within 120 s: {r['misses']}.",
    ]
    if r["misses"]:
        notes.append("Agent log tail:\n\n```\n" + r["log_tail"] + "\n```")
    return {"title": "Coming back after coverage returns (issue #15)", "figures": [f.as_dict() for f in figs],
            "notes": notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    print(json.dumps(collect(args.quick), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
