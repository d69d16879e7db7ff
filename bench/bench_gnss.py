"""GNSS decode throughput: sentences per second, against pynmea2 in the same run.

Input: every real capture in tests/data/gnss-corpus (binary frames, glued
lines and all), concatenated and repeated. Three figures:

* ``umps decode``: the full path the agent runs (framing with checksum check,
  sentence parsing, epoch assembly into fixes), fed in 4 KiB chunks as a
  serial port delivers them.
* ``umps parse``: sentence parsing alone, on lines already split.
* ``pynmea2 parse``: ``pynmea2.parse(line, check=True)`` on the same lines,
  the peer library (parsing only: no framing of a byte stream, no epochs).

Run: ``python bench/bench_gnss.py [--repeat N]`` (``make bench``). A receiver
sends 10-20 sentences per epoch, so 1 Hz needs ~20 sentences/s and 10 Hz
~200; the figures show the margin on a Raspberry-Pi-class core.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from agent.core.gnss import GnssDecoder  # noqa: E402
from agent.core.nmea import Unparsable, parse  # noqa: E402

CORPUS = ROOT / "tests" / "data" / "gnss-corpus"


def corpus_bytes() -> bytes:
    return b"".join(p.read_bytes() for p in sorted(CORPUS.glob("*.log")))


def best_of(runs: int, fn) -> float:
    best = float("inf")
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeat", type=int, default=10, help="copies of the corpus per run")
    ap.add_argument("--runs", type=int, default=3, help="best of this many runs")
    args = ap.parse_args()

    data = corpus_bytes() * args.repeat
    chunks = [data[i : i + 4096] for i in range(0, len(data), 4096)]
    lines = [
        line.strip()
        for line in data.decode("latin-1").splitlines()
        if line.startswith("$") and line.strip().isascii() and line.strip().isprintable()
    ]
    bodies = [line[1:].rsplit("*", 1)[0] for line in lines]

    probe = GnssDecoder(comments=True)
    fixes = sum(len(probe.feed(c)) for c in chunks) + len(probe.flush())
    c = probe.counters
    framed = c.sentences_ok + c.unparsable + c.bad_checksum

    def umps_decode() -> None:
        d = GnssDecoder(comments=True)
        for chunk in chunks:
            d.feed(chunk)
        d.flush()

    def umps_parse() -> None:
        for b in bodies:
            try:
                parse(b)
            except Unparsable:
                pass

    results = [
        ("umps decode (frame+parse+epochs)", framed, best_of(args.runs, umps_decode)),
        ("umps parse (lines)", len(bodies), best_of(args.runs, umps_parse)),
    ]
    try:
        import pynmea2
    except ImportError:
        print("pynmea2 not installed: no peer figure", file=sys.stderr)
    else:

        def peer_parse() -> None:
            for line in lines:
                try:
                    pynmea2.parse(line, check=True)
                except (pynmea2.ParseError, pynmea2.ChecksumError, pynmea2.SentenceTypeError, ValueError):
                    pass

        results.append((f"pynmea2 {pynmea2.__version__} parse (lines)", len(lines), best_of(args.runs, peer_parse)))

    print(f"GNSS decode benchmark: {len(data) / 1e6:.1f} MB, {len(list(CORPUS.glob('*.log')))} captures x {args.repeat}")
    print(f"python {platform.python_version()} on {platform.machine()}, best of {args.runs}")
    print(f"decoder: {framed} sentences framed, {fixes} epochs, {c.fixes} fixes")
    for name, n, secs in results:
        print(f"  {name:40s} {n / secs:12,.0f} sentences/s  ({n} in {secs:.3f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
