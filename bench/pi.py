"""The figures only a real Raspberry Pi gives: run on a unit, paste the output into docs/performance.md.

Usage, on the Pi, from a clone (``make setup`` first: the venv, Mosquitto, Chromium)::

    .venv/bin/python -m bench.pi                      # about 20 minutes
    .venv/bin/python -m bench.pi --gpio-loop 20,21    # also GPIO timing: jumper GPIO20 -> GPIO21
    .venv/bin/python -m bench.pi --card-tbw 40        # also the card's life at the measured writes

``make test-arm64`` proves the install and the tests on arm64 under emulation, where
every time is the emulator's (docs/platform.md). What only the board itself can give:

- **CPU per report on the Cortex-A72/A76**: ``python -m bench --quick --only fix`` (the
  real agent, a 10 Hz receiver, 1 Hz reports) and ``gnss`` (decode throughput) run here;
  their figures are the Pi's.
- **GPIO timing**: with a jumper between two free pins, an output edge is timed to the
  agent's own input path (gpiozero with lgpio, the factory the unit runs) a few hundred
  times: the latency a button press adds before the core sees it.
- **SD-card writes**: the card's own counter (``/sys/block/mmcblk0/stat``, sectors
  written) over the ``fix`` run, as bytes per hour with the agent running; with the
  card's rated endurance (``--card-tbw``, terabytes written) the years it lasts at that rate.
- **The touchscreen page** (``ui``): page update to DOM in Debian's Chromium on this CPU.
  Chromium runs headless without the GPU here, so it is an upper bound; the kiosk's frame
  time on the Pi's GPU is read on the car unit itself (docs/platform.md says how).

It writes nothing under docs/: it prints a Markdown section (and keeps it in
``pi-bench-HOST-DATE.md`` in the current directory) for a person to paste into
``docs/performance.md``. On a machine that is not a Raspberry Pi it says so and stops,
unless ``--anywhere`` (to try the script itself).
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from bench.common import ROOT
from hil.stats import percentile

BENCHES = ("fix", "gnss", "ui", "memory")
CPU_PARTS = {"0xd03": "Cortex-A53", "0xd08": "Cortex-A72", "0xd0b": "Cortex-A76"}


def read(path: str) -> str:
    try:
        return Path(path).read_text(errors="replace").strip("\x00\n ")
    except OSError:
        return ""


def board() -> dict[str, str]:
    """What this machine is: model, CPU core, memory, OS, kernel, Python, the card."""
    cpuinfo = read("/proc/cpuinfo")
    part = next((line.split(":")[1].strip() for line in cpuinfo.splitlines() if line.startswith("CPU part")), "")
    card = "/sys/block/mmcblk0/device"
    os_name = next((line.split("=", 1)[1].strip('"') for line in read("/etc/os-release").splitlines()
                    if line.startswith("PRETTY_NAME=")), "")
    return {
        "model": read("/proc/device-tree/model") or "not a Raspberry Pi (no /proc/device-tree/model)",
        "cpu": f"{CPU_PARTS.get(part, part or platform.machine())} x{os.cpu_count()}",
        "memory": f"{int(read('/proc/meminfo').split()[1]) // 1024} MiB" if read("/proc/meminfo") else "",
        "os": os_name,
        "kernel": platform.release(),
        "python": platform.python_version(),
        "card": " ".join(filter(None, (read(f"{card}/name"), read(f"{card}/date"), read(f"{card}/manfid")))),
        "throttled": throttled(),
    }


def throttled() -> str:
    """The firmware's under-voltage / throttling flags: a throttled Pi gives slow figures."""
    try:
        out = subprocess.run(["vcgencmd", "get_throttled"], capture_output=True, text=True, timeout=5).stdout
    except (OSError, subprocess.SubprocessError):
        return "unknown (no vcgencmd)"
    return out.strip().split("=")[-1]


def sectors_written(device: str = "mmcblk0") -> int | None:
    """Sectors (512 bytes) written to the card since boot, from the block layer's counters."""
    fields = read(f"/sys/block/{device}/stat").split()
    return int(fields[6]) if len(fields) > 6 else None


def gpio_loop(out_pin: int, in_pin: int, edges: int = 400, factory=None) -> dict:
    """Output edge to gpiozero's callback on a jumpered input, with the unit's own factory (lgpio)."""
    from gpiozero import DigitalInputDevice, DigitalOutputDevice

    if factory is None:
        from gpiozero.pins.lgpio import LGPIOFactory

        factory = LGPIOFactory()
    out = DigitalOutputDevice(out_pin, pin_factory=factory)
    inp = DigitalInputDevice(in_pin, pull_up=False, bounce_time=None, pin_factory=factory)
    seen = threading.Event()
    stamp = [0]

    def edge() -> None:
        stamp[0] = time.perf_counter_ns()
        seen.set()

    try:
        out.on()
        time.sleep(0.01)
        if not inp.value:
            return {"error": f"GPIO{in_pin} does not follow GPIO{out_pin}: is the jumper in place?"}
        out.off()
        time.sleep(0.01)
        inp.when_activated = edge
        latencies = []
        missed = 0
        for _ in range(edges):
            seen.clear()
            start = time.perf_counter_ns()
            out.on()
            if seen.wait(0.5):
                latencies.append((stamp[0] - start) / 1e6)
            else:
                missed += 1
            out.off()
            time.sleep(0.005)
        return {"edges": edges, "missed": missed, "p50_ms": percentile(latencies, 50),
                "p99_ms": percentile(latencies, 99), "max_ms": max(latencies) if latencies else None}
    finally:
        inp.close()
        out.close()
        factory.close()


def run_benches(names: tuple[str, ...]) -> tuple[str, float]:
    """``python -m bench --quick --no-doc`` for these: its figure lines, and the seconds it took."""
    start = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--no-doc", "--only", ",".join(names)],
        cwd=ROOT, capture_output=True, text=True, timeout=3 * 3600,
    )
    lines = [line for line in (result.stdout + result.stderr).splitlines() if line.strip()]
    return "\n".join(lines), time.monotonic() - start


def markdown(info: dict, bench_out: str, bench_s: float, written: int | None, gpio: dict | None,
             card_tbw: float | None) -> str:
    when = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [f"## Measured on a Raspberry Pi ({info['model']}, {when})", "",
           "Produced by `python -m bench.pi` on the unit (docs/platform.md); pasted here by hand.", "",
           "| | |", "|---|---|"]
    out += [f"| {key} | {value} |" for key, value in info.items()]
    out += ["", f"### `python -m bench --quick --only {','.join(BENCHES)}` ({bench_s / 60:.0f} min)", "", "```",
            bench_out, "```", ""]
    out += ["### SD card", ""]
    if written is None:
        out.append("No /sys/block/mmcblk0/stat: the root is not on an SD card here.")
    else:
        per_hour = written * 3600 / bench_s
        out.append(f"Written to the card while the benchmarks ran: {written / 1e6:.1f} MB in {bench_s / 60:.0f} min, "
                   f"{per_hour / 1e6:.1f} MB per hour (the whole system, the agent included).")
        if card_tbw:
            years = card_tbw * 1e12 / (per_hour * 24 * 365)
            out.append(f"At that rate a card rated {card_tbw:g} TBW lasts {years:.0f} years of round-the-clock running.")
    out += ["", "### GPIO timing (gpiozero + lgpio, output edge to the input's callback)", ""]
    if gpio is None:
        out.append("Not measured: run with `--gpio-loop OUT,IN` and a jumper between the two pins.")
    elif "error" in gpio:
        out.append(f"Not measured: {gpio['error']}")
    else:
        out.append(f"{gpio['edges']} edges, {gpio['missed']} missed: p50 {gpio['p50_ms']:.3f} ms, "
                   f"p99 {gpio['p99_ms']:.3f} ms, max {gpio['max_ms']:.3f} ms.")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m bench.pi", description=__doc__.splitlines()[0])
    ap.add_argument("--gpio-loop", metavar="OUT,IN", help="BCM numbers of two free pins joined by a jumper")
    ap.add_argument("--card-tbw", type=float, metavar="TB", help="the SD card's rated endurance, terabytes written")
    ap.add_argument("--anywhere", action="store_true", help="run on a machine that is not a Raspberry Pi")
    ap.add_argument("--only", default=",".join(BENCHES), help=f"benchmarks to run (default {','.join(BENCHES)})")
    args = ap.parse_args(argv)
    info = board()
    if not read("/proc/device-tree/model").startswith("Raspberry Pi") and not args.anywhere:
        print(f"bench.pi: this is {info['model']}; run it on the unit (or --anywhere to try it)", file=sys.stderr)
        return 2
    gpio = None
    if args.gpio_loop:
        out_pin, in_pin = (int(p) for p in args.gpio_loop.split(","))
        try:
            gpio = gpio_loop(out_pin, in_pin)
        except Exception as exc:  # no chip, pin busy, no lgpio: say it in the output, go on with the rest
            gpio = {"error": f"{type(exc).__name__}: {exc}"}
    before = sectors_written()
    names = tuple(n for n in args.only.split(",") if n)
    print(f"bench.pi: running python -m bench --quick --only {','.join(names)}", file=sys.stderr, flush=True)
    bench_out, bench_s = run_benches(names)
    after = sectors_written()
    written = (after - before) * 512 if before is not None and after is not None else None
    text = markdown(info, bench_out, bench_s, written, gpio, args.card_tbw)
    keep = Path(f"pi-bench-{socket.gethostname()}-{dt.date.today().isoformat()}.md")
    keep.write_text(text)
    print(text)
    print(f"bench.pi: kept in {keep.resolve()}; paste it into docs/performance.md", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
