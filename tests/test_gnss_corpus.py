"""``gnss decode`` against gpsd 3.22 on real receiver captures.

Data: tests/data/gnss-corpus/NAME.log are real captures from gpsd's
regression suite (BSD-2-Clause, see COPYING.gpsd there); NAME.log.chk is what
gpsd itself made of them: the sentences it accepted, each followed by the
JSON reports it triggered. ``{"class":"TPV"}`` is a fix report.

Matching rule
-------------
* A gpsd *fix* is a TPV with ``mode`` >= 2 and a position. Its time is the
  time of day of its ``time`` (the date is ignored: gpsd shifts old dates by
  1024 weeks). A TPV without ``time`` comes from before gpsd knew the date;
  it is given the latest time of day carried by a sentence (GGA, RMC, GNS,
  GLL) up to it, and may match our epoch within 9 ms of that (timestamps
  closer than 10 ms are one epoch, whose time is the latest of them).
* Every gpsd fix must be matched by one of our epochs at that time which is
  a fix with latitude and longitude within 1e-6 degrees.
* A gpsd TPV with ``mode`` 1 and a time means no fix at that time: none of our
  epochs at that time may be a fix, unless gpsd also reported a fix at that
  time. (When a receiver reports the loss of its fix in sentences without a
  timestamp, gpsd repeats the previous epoch's time on the no-fix report:
  quectel.log at 02:20:38.)
* Where gpsd reported a timed fix, our fix has the mode of gpsd's last
  report at that time, the same altitude (MSL) when gpsd has one, and,
  whenever we report a speed or track, the same as gpsd's. (gpsd derives a
  speed from successive positions when the receiver sends none; we report
  only what the receiver said, so there we have none.)
"""

from __future__ import annotations

import io
import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.gnss_tools import decode

CORPUS = Path(__file__).parent / "data" / "gnss-corpus"
CAPTURES = sorted(p.name for p in CORPUS.glob("*.log"))
# Where a sentence carries its time of day.
TIME_FIELD = {"GGA": 1, "RMC": 1, "GNS": 1, "GLL": 5}


def test_the_whole_corpus_is_here() -> None:
    assert len(CAPTURES) == 20
    assert all((CORPUS / f"{name}.chk").is_file() for name in CAPTURES)
    assert (CORPUS / "COPYING.gpsd").is_file()


def ms_of_day(tod: str) -> int:
    h, m, s = tod.split(":")
    return round((int(h) * 3600 + int(m) * 60 + float(s)) * 1000)


def sentence_time(line: str) -> int | None:
    """Time of day (ms) carried by an input sentence, if any; independent of the decoder."""
    if not line.startswith("$") or len(line) < 6:
        return None
    idx = TIME_FIELD.get(line[3:6])
    fields = line.split("*")[0].split(",")
    if idx is None or len(fields) <= idx:
        return None
    t = fields[idx]
    if len(t) < 6 or not t[:6].isdigit():
        return None
    frac = t[7:10] if len(t) > 7 and t[6] == "." else ""
    return ((int(t[0:2]) * 60 + int(t[2:4])) * 60 + int(t[4:6])) * 1000 + int((frac + "000")[:3])


@dataclass
class Report:
    line: int  # line in the .chk
    after: str  # the sentence that triggered it
    mode: int
    ms: int | None  # time of day, ms
    timed: bool  # gpsd gave the time itself
    tpv: dict

    def describe(self) -> str:
        keys = ("mode", "time", "lat", "lon", "altMSL", "speed", "track")
        shown = {k: self.tpv[k] for k in keys if k in self.tpv}
        return f".chk line {self.line} (after {self.after[:40]!r}): gpsd {shown}"


def gpsd_reports(chk: Path) -> list[Report]:
    out: list[Report] = []
    last_sentence, last_ms = "", None
    for n, line in enumerate(chk.read_text("latin-1").splitlines(), 1):
        if line.startswith("{"):
            tpv = json.loads(line)
            if tpv.get("class") != "TPV":
                continue
            if "time" in tpv:
                out.append(Report(n, last_sentence, tpv["mode"], ms_of_day(tpv["time"][11:23]), True, tpv))
            else:
                out.append(Report(n, last_sentence, tpv["mode"], last_ms, False, tpv))
        elif line.strip():
            last_sentence = line.strip()
            last_ms = sentence_time(last_sentence) or last_ms
    return out


def our_epochs(log: Path) -> tuple[list[dict], dict[int, list[dict]]]:
    out = io.StringIO()
    with log.open("rb") as src:
        decode(src, out)
    epochs = [json.loads(line) for line in out.getvalue().splitlines()]
    by_ms: dict[int, list[dict]] = defaultdict(list)
    for e in epochs:
        if e["time"]:
            tod = e["time"][11:23] if e["time"].endswith("Z") else e["time"]
            by_ms[ms_of_day(tod)].append(e)
    return epochs, by_ms


def near(by_ms: dict[int, list[dict]], ms: int, window: int) -> list[dict]:
    return [e for d in range(-window, window + 1) for e in by_ms.get(ms + d, [])]


def close(e: dict, tpv: dict) -> bool:
    return abs(e["lat"] - tpv["lat"]) <= 1e-6 and abs(e["lon"] - tpv["lon"]) <= 1e-6


def brief(es: list[dict]) -> str:
    return "[" + ", ".join(f"{{time {e['time']}, mode {e['mode']}, lat {e['lat']}, lon {e['lon']}}}" for e in es) + "]"


@pytest.mark.parametrize("capture", CAPTURES)
def test_decode_matches_gpsd(capture: str) -> None:
    epochs, by_ms = our_epochs(CORPUS / capture)
    reports = gpsd_reports(CORPUS / f"{capture}.chk")
    problems: list[str] = []

    fixes = [r for r in reports if r.mode >= 2 and "lat" in r.tpv]
    assert fixes, "the capture has fixes to compare"
    fix_times = {r.ms for r in fixes if r.timed}
    for r in fixes:
        if r.ms is None:
            candidates = [e for e in epochs if e["mode"] >= 2]
        else:
            candidates = [e for e in near(by_ms, r.ms, 0 if r.timed else 9) if e["mode"] >= 2]
        if not any(close(e, r.tpv) for e in candidates):
            ours = near(by_ms, r.ms, 9) if r.ms is not None else []
            problems.append(f"missing fix: {r.describe()}; ours at that time: {brief(ours)}")

    for r in reports:
        if r.mode < 2 and r.timed and r.ms not in fix_times:
            wrong = [e for e in by_ms.get(r.ms, []) if e["mode"] >= 2]
            if wrong:
                problems.append(f"fix where gpsd has none: {r.describe()}; ours: {brief(wrong)}")

    last_at: dict[int, Report] = {}
    for r in fixes:
        if r.timed:
            last_at[r.ms] = r
    for ms, r in last_at.items():
        ours = [e for e in by_ms.get(ms, []) if e["mode"] >= 2 and close(e, r.tpv)]
        if not ours:
            continue  # already reported above
        e = ours[-1]
        if e["mode"] != r.mode:
            problems.append(f"mode {e['mode']} != gpsd's: {r.describe()}")
        if "altMSL" in r.tpv and (e["alt"] is None or abs(e["alt"] - r.tpv["altMSL"]) > 1e-3):
            problems.append(f"alt {e['alt']} != gpsd's: {r.describe()}")
        for key in ("speed", "track"):
            if e[key] is not None and (key not in r.tpv or abs(e[key] - r.tpv[key]) > 1e-3):
                problems.append(f"{key} {e[key]} != gpsd's: {r.describe()}")

    assert not problems, f"{capture}: {len(problems)} differences from gpsd:\n" + "\n".join(problems[:25])
