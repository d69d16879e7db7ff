"""Run every benchmark and write docs/performance.md (``make bench``).

Usage::

    python -m bench                  # everything, full length (about 45 minutes, a 15-minute memory soak included)
    python -m bench --quick          # shorter runs (about 15 minutes), same figures
    python -m bench --only button    # one benchmark (repeatable, or a,b,c)
    python -m bench --soak           # the memory soak for 2 hours of wall time (--soak-hours N), with the rest
    python -m bench --list           # what there is
    python -m bench --doc-only       # rewrite the doc from docs/performance.json

Each benchmark runs in its own process (``bench.run_one``) and returns its
figures as JSON; each figure carries the target the issue names, the measured
value and, where one is measured in the same run, a peer's value (raw paho,
pynmea2, a bare gpiozero + paho process, the broker hop alone). The results
are kept in ``docs/performance.json``; ``--only`` replaces just the named
benchmarks' results there, and the doc is always written from all of them,
each section saying when and how (full or quick) it was measured.

Each new figure is compared with the last recorded one of the same benchmark
(``compare``: matched by name, counts aside): one more than 20 % worse, in
the direction of its comparison, is marked **regression** in the doc beside
its target, with the value and date it is compared with, and counted under
the table of targets. Targets set against the peer (issue 27: "≤ 2× the
peer in the same run") are figures of their own, the ratio to the peer.

The end-to-end benchmarks (button, call, fix) start the real agent process
(``python -m agent run``) against the rig's emulators and a private Mosquitto
on a free port (mutual TLS, as on a vehicle); nothing here touches a broker that was already running.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import ROOT, fmt, machine

BENCHES: dict[str, tuple[str, int]] = {
    # name: (what it measures, timeout in seconds for a full run)
    "gnss": ("NMEA decode throughput against pynmea2", 300),
    "link": ("outbox drain, SD writes, link RSS against raw paho", 900),
    "ui": ("touchscreen page update -> DOM (component)", 300),
    "button": ("button edge -> status PUBLISH, real agent, against gpiozero + paho", 900),
    "call": ("call PUBLISH -> touchscreen DOM and -> `received`, real agent", 600),
    "fix": ("fix age at publish, 1 Hz cadence, unplug, RSS, CPU and disk writes, real agent, 10 Hz receiver", 900),
    "fleet": ("1,000 simulated units at 1 Hz against one broker (the rig's fleet mode)", 300),
    "regions": ("5,000 units at 1 Hz on three regional brokers bridged to a central one, per level", 600),
    "bill": ("bytes per report on the wire and a month at 1 Hz, JSON and CBOR, with and without TLS", 300),
    "recovery": ("link back -> first live report, closed and black-holed; black-hole detection, real agent", 900),
    "power": ("power-fail warning -> safe and stopped, 24 h backlog, link down, real agent", 600),
    "memory": ("RSS, PSS and anonymous memory of the car and motorcycle profiles; growth over a soak", 1500),
    "imu": ("crash detection: impact -> pre-alarm, false alarms over 10 h of riding, crashes found, CPU", 900),
}

DOC = ROOT / "docs" / "performance.md"
STORE = ROOT / "docs" / "performance.json"

# Targets an issue set and a later one withdrew, and why.
RETIRED = [
    ("#3", "steady RSS of the whole agent ≤ 40 MiB",
     "#18: it was measured on a set-up no vehicle runs (a motorcycle with no display), and keeping under it "
     "pushed the design toward what is harder to trust (config validated in a child process answering with "
     "pickles, call payloads checked by hand, signatures in hand-written Python). A unit has hundreds of MiB; "
     "what it needs is memory that stays flat over days on the profiles vehicles run. The targets now: each "
     "real profile (car with its touchscreen server, motorcycle with its OLED) ≤ 64 MiB, growth ≤ 1 MiB over "
     "a soak (see the memory section)."),
]

# Figures the issues name that no benchmark here measures yet, and why.
NOT_MEASURED = [
    ("#2", "`make test` under 10 minutes on a clean clone", "timed by CI, not by the bench"),
]


def run_bench(name: str, quick: bool, soak_hours: float | None = None) -> dict:
    timeout = BENCHES[name][1] // (2 if quick else 1) + 120
    soak = ["--soak-hours", str(soak_hours)] if soak_hours and name == "memory" else []
    if soak:
        timeout += int(soak_hours * 3600)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    with tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        out = Path(tmp) / "result.json"
        cmd = [sys.executable, "-m", "bench.run_one", name, str(out)] + (["--quick"] if quick else []) + soak
        t0 = time.monotonic()
        try:
            proc = subprocess.run(cmd, cwd=ROOT, env=env, timeout=timeout, stdout=sys.stderr, stderr=sys.stderr)
            code = proc.returncode
        except subprocess.TimeoutExpired:
            code = None
        if out.exists():
            result = json.loads(out.read_text())
        else:
            result = {"status": "failed", "figures": [],
                      "reason": f"no result (timed out after {timeout} s)" if code is None
                      else f"the benchmark process exited with {code} and wrote no result"}
            result["seconds"] = time.monotonic() - t0
    result.setdefault("title", BENCHES[name][0])
    result["name"] = name
    result["quick"] = quick
    result["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    return result


# A figure more than this much worse than the last recorded one is marked a regression in the doc.
REGRESSION = 0.20


def figure_key(name: str) -> str:
    """A figure's name without its counts ("p50 (30 calls)", "worst of 3"), so quick and full runs match."""
    return re.sub(r"(?<![A-Za-z\d.])\d+(?:\.\d+)?", "#", name)


def compare(result: dict, previous: dict | None) -> None:
    """Give each figure of ``result`` the last recorded value of the same figure (``previous``, the
    benchmark's result before this run) and whether it got more than ``REGRESSION`` worse.

    Worse is in the direction of the figure's comparison (``<=``: higher is worse; ``>=``: lower), also
    for figures with no target. Kept in the figure, so ``--doc-only`` writes the same marks.
    """
    if not previous or previous.get("status") != "ok":
        return
    before: dict[str, dict] = {}
    for fig in previous.get("figures", []):
        before.setdefault(figure_key(fig["name"]), fig)
    for fig in result.get("figures", []):
        old = before.get(figure_key(fig["name"]))
        if old is None or not _number(old.get("value")):
            continue
        fig["previous"] = {"value": old["value"], "date": previous.get("date"), "quick": previous.get("quick")}
        # At the precision the doc shows: 0.0005 -> 0.002 "reports" of drift both read 0.00.
        digits = fig.get("digits", 1)
        value = round(fig["value"], digits) if _number(fig.get("value")) else None
        fig["regression"] = worse_by(value, round(old["value"], digits), fig.get("op", "<=")) > REGRESSION


def worse_by(value: float | None, before: float, op: str) -> float:
    """How much worse ``value`` is than ``before`` (0.25: 25 % worse; negative: better; 0 if not comparable)."""
    if not _number(value) or before <= 0:
        return 0.0
    return (value - before) / before if op == "<=" else (before - value) / before


def _number(x: object) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and x == x  # NaN != NaN


def load_store() -> dict:
    try:
        return json.loads(STORE.read_text())
    except (OSError, ValueError):
        return {"results": {}}


# ------------------------------------------------------------------- doc


def verdict(fig: dict) -> str:
    if fig.get("ok") is None:
        return "—"
    return "pass" if fig["ok"] else "**miss**"


def target_text(fig: dict) -> str:
    text = "—"
    if fig.get("target") is not None:
        op = "≤" if fig.get("op", "<=") == "<=" else "≥"
        src = f", {fig['source']}" if fig.get("source") else ""
        text = f"{op} {fmt(fig['target'], 0 if float(fig['target']).is_integer() else 1)} {fig['unit']}{src}"
    if fig.get("regression"):
        text += f"; {regression_text(fig)}"
    return text


def regression_text(fig: dict) -> str:
    prev = fig["previous"]
    worse = worse_by(fig.get("value"), prev["value"], fig.get("op", "<="))
    mode = "quick" if prev.get("quick") else "full"
    return (f"**regression**: {100 * worse:.0f} % worse than the last recorded {value_text(prev['value'], fig)} "
            f"({prev.get('date') or '?'}, {mode} run)")


def value_text(value, fig: dict) -> str:
    text = fmt(value, fig.get("digits", 1))
    return text if text == "—" else f"{text} {fig['unit']}"


def peer_text(fig: dict) -> str:
    if fig.get("peer") is None:
        return "—"
    return f"{value_text(fig['peer'], fig)} ({fig.get('peer_label') or 'peer'})"


def render(store: dict, mach: dict) -> str:
    results = store["results"]
    ordered = [results[n] for n in BENCHES if n in results]
    lines = [
        "# Performance",
        "",
        "Measured by `make bench` (`python -m bench`), which runs every benchmark in `bench/`, each in its own "
        "process, and writes this file. The end-to-end figures come from the real agent process "
        "(`python -m agent run`) driven by the rig's GNSS and GPIO emulators, with a private Mosquitto on a free "
        "loopback port. As on a vehicle, the agent reaches it over TLS with a client certificate and holds an "
        "admin key (remote requests must be signed); the peers use the same TLS. Each target is the one the issue names; a peer, where there is one, was measured in the "
        "same run on the same machine. A missed target is marked **miss** and left as measured.",
        "",
        "## Machine",
        "",
        "| | |",
        "| --- | --- |",
    ]
    for key, label in (("cpu", "CPU"), ("cores", "Cores"), ("memory", "Memory"), ("os", "OS"),
                       ("kernel", "Kernel"), ("python", "Python"), ("mosquitto", "Broker"),
                       ("chromium", "Browser"), ("date", "Doc written")):
        if mach.get(key):
            lines.append(f"| {label} | {mach[key]} |")
    lines += ["", "This is a 2-core x86-64 development machine, not the unit's Raspberry-Pi-class board: a Pi 4 "
                  "core is several times slower, so read CPU and latency figures as relative margins.", ""]

    targeted = [(r, f) for r in ordered for f in r.get("figures", []) if f.get("target") is not None]
    if targeted:
        lines += ["## Against the issues' targets", "", "| Area | Figure | Target | Measured | Result |",
                  "| --- | --- | --- | --- | --- |"]
        for _r, f in targeted:
            lines.append(f"| {f['area']} | {f['name']} | {target_text(f)} | {value_text(f['value'], f)} | "
                         f"{verdict(f)} |")
        missed = [f for _r, f in targeted if f.get("ok") is False]
        lines += ["", f"{len(targeted) - len(missed)} of {len(targeted)} targeted figures met"
                      + (f"; missed: {', '.join(f['name'] for f in missed)}." if missed else "."), ""]
    regressed = [f for r in ordered for f in r.get("figures", []) if f.get("regression")]
    compared = [f for r in ordered for f in r.get("figures", []) if f.get("previous")]
    if compared:
        lines += [f"Against the last recorded figures: {len(regressed)} of {len(compared)} more than "
                  f"{100 * REGRESSION:.0f} % worse"
                  + (f" (marked **regression** beside the target): {', '.join(f['name'] for f in regressed)}."
                     if regressed else "."), ""]

    for r in ordered:
        mode = "quick" if r.get("quick") else "full"
        lines += [f"## {r.get('title', r['name'])}", "",
                  f"`python -m bench --only {r['name']}` · measured {r.get('date', '?')} ({mode} run, "
                  f"{r.get('seconds', 0):.0f} s)", ""]
        if r.get("status") != "ok":
            lines += [f"**Not measured: {r.get('status')}**: {r.get('reason', '')}", ""]
            if r.get("traceback"):
                lines += ["```", r["traceback"].strip()[-1500:], "```", ""]
            continue
        lines += ["| Figure | Target | Measured | Peer (same run) | Result |", "| --- | --- | --- | --- | --- |"]
        for f in r["figures"]:
            name = f["name"] + (f" ({f['note']})" if f.get("note") else "")
            lines.append(f"| {name} | {target_text(f)} | {value_text(f['value'], f)} | {peer_text(f)} | "
                         f"{verdict(f)} |")
        lines.append("")
        for note in r.get("notes", []):
            lines += [f"- {note}" if "\n" not in note else note, ""]

    lines += ["## Retired targets", "", "| Issue | Target | Why it was retired |", "| --- | --- | --- |"]
    lines += [f"| {src} | {what} | {why} |" for src, what, why in RETIRED]
    lines += ["", "## Not measured here", "", "| Issue | Figure | Why |", "| --- | --- | --- |"]
    lines += [f"| {src} | {what} | {why} |" for src, what, why in NOT_MEASURED]
    lines += [
        "",
        "## How to reproduce",
        "",
        "```sh",
        "make bench                        # sets up .venv, runs python -m bench, rewrites this file",
        ".venv/bin/python -m bench --quick # shorter runs",
        ".venv/bin/python -m bench --only call --only fix",
        ".venv/bin/python -m bench --only memory --soak   # the memory soak for 2 hours (make bench BENCH_FLAGS=--soak)",
        ".venv/bin/python -m bench.bench_button --presses 200   # one benchmark, printed, no doc",
        "```",
        "",
        "Needs `mosquitto` (Debian package `mosquitto`) and, for the touchscreen figures, Debian's `chromium` at "
        "`/usr/bin/chromium` (driven by Playwright for Python through `executable_path`). Results of the last "
        "run of each benchmark are kept in `docs/performance.json`.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", default=[], metavar="NAME",
                    help=f"run only these ({', '.join(BENCHES)}); repeatable or comma-separated")
    ap.add_argument("--quick", action="store_true", help="shorter runs")
    ap.add_argument("--soak", action="store_true", help="soak the memory benchmark for --soak-hours (default 2)")
    ap.add_argument("--soak-hours", type=float, default=2.0, metavar="H", help="with --soak: how long")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    ap.add_argument("--no-doc", action="store_true", help="print the figures, do not touch docs/")
    ap.add_argument("--doc-only", action="store_true",
                    help="run nothing: rewrite docs/performance.md from the results kept in docs/performance.json")
    args = ap.parse_args(argv)
    if args.doc_only:
        store = load_store()
        DOC.write_text(render(store, store.get("machine") or machine()))
        print(f"wrote {DOC.relative_to(ROOT)} from {STORE.relative_to(ROOT)}", file=sys.stderr)
        return 0
    if args.list:
        for name, (what, _t) in BENCHES.items():
            print(f"{name:8s} {what}")
        return 0
    names = [n for item in args.only for n in item.split(",") if n] or list(BENCHES)
    unknown = [n for n in names if n not in BENCHES]
    if unknown:
        ap.error(f"unknown benchmark(s) {unknown}; known: {', '.join(BENCHES)}")

    store = load_store()
    failed = []
    for name in names:
        print(f"== {name}: {BENCHES[name][0]}{' (quick)' if args.quick else ''}", file=sys.stderr, flush=True)
        result = run_bench(name, args.quick, args.soak_hours if args.soak else None)
        compare(result, store["results"].get(name))
        store["results"][name] = result
        if result["status"] == "failed":
            failed.append(name)
        if result["status"] != "ok":
            print(f"   {result['status']}: {result.get('reason', '')}", file=sys.stderr, flush=True)
        for f in result.get("figures", []):
            tgt = target_text(f)
            print(f"   {f['area']:11s} {f['name'][:70]:70s} {value_text(f['value'], f):>16s}  peer "
                  f"{value_text(f['peer'], f) if f.get('peer') is not None else '—':>14s}  target {tgt}  "
                  f"{verdict(f).strip('*')}" + ("  REGRESSION" if f.get("regression") else ""), flush=True)
    if not args.no_doc:
        mach = machine()
        store["machine"] = mach
        STORE.write_text(json.dumps(store, indent=1, allow_nan=True) + "\n")
        DOC.write_text(render(store, mach))
        print(f"wrote {DOC.relative_to(ROOT)} and {STORE.relative_to(ROOT)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
