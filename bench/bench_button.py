"""Button edge to status PUBLISH seen by a subscriber, with the real agent process.

How it measures: the rig (``bench.rig``) runs the agent with its gpiozero
pins on the GPIO emulator (pigpio protocol on loopback) and a private
Mosquitto. Each round the emulator closes a status button's contact
(alternately ``en_route`` and ``available``, both allowed transitions) and
the time of that edge is taken from the emulator's pin history (monotonic
clock); a subscriber on the broker stamps the retained ``status`` message
carrying the new status (same clock, same process). The button is released
and its release reported before the next round.

The agent's inputs keep their configured debounce (``bounce_s``, default
20 ms); the agent debounces on the leading edge (the first edge is reported
at once, bounces after it are absorbed), so the debounce adds no latency.

Peer, same run, same emulator and broker: a minimal process with a gpiozero
``Button`` (same pin factory, no debounce at all) whose ``when_pressed``
publishes the status with raw paho (QoS 1, retained, the same mutual TLS). No outbox, no state
machine, no debounce: the floor for this path in Python.

Run: ``python -m bench.bench_button [--presses N]``.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout

from bench.common import ROOT, Figure, log, ratio, summary  # noqa: E402
from bench.peers import command as peer_command  # noqa: E402
from bench.rig import INPUT_PINS, PREFIX, Rig, topic  # noqa: E402

STATUSES = ("en_route", "available")
PEER_UNIT = "PEER-01"



def press_rounds(rig: Rig, presses: int, status_topic: str, warmup: int = 5) -> dict:
    """Press alternate status buttons; returns latencies (ms) edge->seen and report->seen."""
    gpio, watcher = rig.gpio, rig.watcher
    assert gpio is not None and watcher is not None
    rng = random.Random(1)
    edge_to_pub: list[float] = []
    report_to_pub: list[float] = []
    misses = 0
    for i in range(warmup + presses):
        target = STATUSES[i % 2]
        pin = INPUT_PINS[target]
        time.sleep(rng.uniform(0.02, 0.06))  # de-phase from anything periodic
        mark = watcher.mark()
        gpio.press(pin)
        edge = next(c.mono for c in reversed(gpio.history(pin)) if c.by == "rig" and c.level == 0)
        seen = watcher.wait_message(lambda m: m.topic == status_topic and (m.json() or {}).get("status") == target, 2.0, mark)
        gpio.release(pin)
        if seen is None:
            log(f"press {i}: no {target} status within 2 s")
            if i >= warmup:
                misses += 1
        elif i >= warmup:
            edge_to_pub.append(1000 * (seen.mono - edge))
            reported = gpio.report_after(pin, 0, edge)
            if reported is not None:
                report_to_pub.append(1000 * (seen.mono - reported))
        # Let the release be reported (debounced) before the next press.
        gpio.wait_for(lambda g, p=pin, e=edge: g.report_after(p, 1, e) is not None, 1.0)
    return {"edge": edge_to_pub, "report": report_to_pub, "misses": misses}


def run(presses: int) -> dict:
    rig = Rig(kind="motorcycle").start()
    out: dict = {"presses": presses}
    try:
        log(f"bench_button: agent up (pid {rig.agent.pid}); {presses} presses")
        out["agent"] = press_rounds(rig, presses, topic("status"))
        out["agent_alive"] = rig.agent.alive()
        # The peer: the same presses to a bare gpiozero + paho process, once the
        # agent is stopped (so the two never share the presses or the CPU).
        out["agent_stop"] = rig.agent.stop()
        peer_topic = f"{PREFIX}/{PEER_UNIT}/status"
        peer_seen_as = rig.watch(peer_topic)
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        tls = rig.client_tls("bench-peer-button")
        peer = subprocess.Popen(
            peer_command("button", str(rig.broker.port), str(rig.gpio.port), peer_topic,
                         json.dumps({s: INPUT_PINS[s] for s in STATUSES}), *tls.argv()),
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env, cwd=ROOT,
        )
        try:
            if peer.stdout.readline().strip() != "ready":
                raise RuntimeError("the peer did not start")
            out["peer"] = press_rounds(rig, presses, peer_seen_as)
        finally:
            peer.stdin.close()
            try:
                peer.wait(10)
            except subprocess.TimeoutExpired:
                peer.kill()
                peer.wait()
    finally:
        info = rig.stop()
        out["agent_log_tail"] = info.get("agent_log_tail", "")
    return out


def collect(quick: bool = False) -> dict:
    presses = 50 if quick else 1000
    r = run(presses)
    a, p = summary(r["agent"]["edge"]), summary(r["peer"]["edge"])
    label = "gpiozero Button, no debounce, + raw paho"
    figs = [
        Figure("Panel", f"button edge -> status PUBLISH seen by a subscriber, p50 ({a['n']} presses)", a["p50"], "ms",
               peer=p["p50"], peer_label=label),
        Figure("Panel", "button edge -> status PUBLISH seen, p95", a["p95"], "ms", peer=p["p95"], peer_label=label),
        Figure("Panel", "button edge -> status PUBLISH seen, p99", a["p99"], "ms", target=10, source="#4",
               peer=p["p99"], peer_label=label, note=f"max {a['max']:.1f} ms"),
        Figure("Panel", "button edge -> status PUBLISH seen, p99, against the peer's p99 in the same run",
               ratio(a["p99"], p["p99"]), "× the peer", target=2, source="#27", digits=2,
               note=f"agent {a['p99']:.1f} ms, peer {p['p99']:.1f} ms"),
        Figure("Panel", "button edge -> status PUBLISH seen, max, against the rig's scenario bound", a["max"], "ms",
               target=50, source="#7 scenario: status within 50 ms", peer=p["max"], peer_label=label),
    ]
    notes = [
        "The real agent process (`python -m agent run`) with `[gpio] factory = \"pigpio\"` against the rig's "
        "GPIO emulator, a private Mosquitto, a subscriber on `umps/<unit>/status`; alternate presses of "
        "`en_route` and `available`, 5 warm-up presses not counted, 20-60 ms apart at random after the release "
        "was reported.",
        "Edge time: the emulator's pin history when the contact closes; receipt: the subscriber in the same "
        "process, same monotonic clock. The agent keeps its default 20 ms debounce, applied after the leading "
        "edge (no added latency); the peer has none.",
        "The peer runs after the agent has stopped, on the same emulator and broker.",
        f"Misses among the measured presses (no status within 2 s): agent {r['agent']['misses']}, "
        f"peer {r['peer']['misses']}.",
    ]
    if r["agent"]["misses"]:
        notes.append("Agent log tail:\n\n```\n" + r["agent_log_tail"][-1200:] + "\n```")
    return {"title": "Panel buttons end to end (issues #4, #7, #27)", "figures": [f.as_dict() for f in figs],
            "notes": notes}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presses", type=int, default=1000)
    args = ap.parse_args(argv)
    r = run(args.presses)
    for who in ("agent", "peer"):
        for key in ("edge",):
            s = summary(r[who][key])
            print(f"{who:5s} {key:6s}->PUBLISH: n={s['n']} p50 {s['p50']:.1f} p95 {s['p95']:.1f} "
                  f"p99 {s['p99']:.1f} max {s['max']:.1f} ms")
        print(f"{who} misses: {r[who]['misses']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
