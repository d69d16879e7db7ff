"""Judging a run: each expectation of a scenario against a :class:`RunLog` (pure).

``evaluate(scenario, log)`` returns one :class:`Outcome` per expectation, in
file order: passed or not, what was expected, what was seen and when, the
measured latency where there is one, and the series the report plots
(cadence intervals, position errors). Nothing here opens a socket or reads a
clock, so every rule is tested on hand-made logs.

Anchors: ``after = "<step id>"`` measures from the moment the rig performed
that step (``RunLog.actions``); ``at = <s>`` from that scenario time; neither
from ``t = 0``. A step the rig could not perform fails every expectation
anchored on it.

Matching (``match`` tables): keys are dotted paths into the JSON payload
(``fix.mode``, ``call.id``); a value matches by equality, or by one operator
``{ gte = 2 }`` among ``eq ne gt gte lt lte in exists contains null``
(``{ null = true }`` matches a JSON ``null``, which TOML cannot write). An empty
table matches any message on the topic, JSON or not.
"""

from __future__ import annotations

import bisect
import datetime as dt
import math
from dataclasses import dataclass, field, replace
from typing import Any

from hil.runlog import Msg, PinSample, RunLog
from hil.scenario import Expectation, Scenario
from hil.scenario import match_text as _match_text
from hil.scenario_schema import COLOURS
from hil.seq_ledger import SeqLedger, ranges
from hil.stats import percentile

TELEMETRY_TOPICS = ("telemetry", "telemetry/backlog")
_MISSING = object()
BLINK_WINDOW_S = 2.5  # "blinking": two changes within this (the slowest pattern is 1 s on, 1 s off)


@dataclass(frozen=True)
class Outcome:
    name: str
    kind: str
    passed: bool
    expected: str
    seen: str
    at: float | None = None  # rig time of the decisive observation
    latency_ms: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
    # (from, to) in rig seconds: when what it judges should have happened (the report shows the
    # agent's log of that span under a failure); None when the anchor step never ran.
    window: tuple[float, float] | None = None
    # What latency_ms measures: "latency", a reaction to a step or a message; "fix", how long
    # the receiver took to get (or the unit to notice it lost) a fix: seconds, not milliseconds.
    measure: str = "latency"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name, "kind": self.kind, "passed": self.passed, "expected": self.expected,
            "seen": self.seen, "at": self.at, "latency_ms": self.latency_ms, "data": self.data,
            "window": list(self.window) if self.window else None, "measure": self.measure,
        }


def evaluate(scenario: Scenario, log: RunLog) -> list[Outcome]:
    return [evaluate_one(e, log) for e in scenario.expectations]


def evaluate_one(exp: Expectation, log: RunLog) -> Outcome:
    handler = _HANDLERS[exp.kind]
    anchor: float | str = 0.0
    if "after" in exp.args or "at" in exp.args:
        anchor = _anchor(exp, log)
        if isinstance(anchor, str):
            return Outcome(exp.name, exp.kind, False, describe_expected(exp), anchor, measure=measure_of(exp))
    outcome = handler(exp, log, anchor)
    return replace(outcome, window=window_of(exp, anchor, log), measure=measure_of(exp))


def window_of(exp: Expectation, anchor: float, log: RunLog) -> tuple[float, float]:
    """The span of rig time an expectation judges."""
    a = exp.args
    if a.get("within_ms") is not None:
        return anchor, anchor + (a["within_ms"] + (a.get("hold_ms") or 0.0)) / 1000.0
    if exp.kind == "no_message":
        return anchor, anchor + a["for_s"] if a.get("for_s") else log.end_t
    if a.get("from_s") is not None:
        return float(a["from_s"]), float(a["to_s"]) if a.get("to_s") is not None else log.end_t
    if exp.kind == "agent_alive":
        return max(0.0, log.end_t - 5.0), log.end_t
    return 0.0, log.end_t


def measure_of(exp: Expectation) -> str:
    """"fix" for an expectation that waits on the receiver's fix (a first fix, a fix lost or back,
    the GNSS LED): its time is the sky's and the receiver's, seconds long, not the unit's reaction."""
    a = exp.args
    matches = [a.get("match") or {}, *(a.get("matches") or [])]
    if exp.kind in ("message", "sequence") and any(str(k).startswith("fix.") for m in matches for k in m):
        return "fix"
    if exp.kind == "led" and a.get("led") == "gnss":
        return "fix"
    return "latency"


def _anchor(exp: Expectation, log: RunLog) -> float | str:
    after, at = exp.anchor
    if after is not None:
        action = log.action(after)
        if action is None:
            return f"step {after!r} never ran (the run ended at {log.end_t:.1f} s)"
        if not action.ok:
            return f"step {after!r} failed at {action.t:.2f} s: {action.detail}"
        return action.t
    return float(at) if at is not None else 0.0


# ------------------------------------------------------------------ matching


def lookup(data: Any, path: str) -> Any:
    for part in path.split("."):
        if isinstance(data, dict) and part in data:
            data = data[part]
        elif isinstance(data, list) and part.isdigit() and int(part) < len(data):
            data = data[int(part)]
        else:
            return _MISSING
    return data


def value_matches(value: Any, want: Any) -> bool:
    if isinstance(want, dict):
        ((op, arg),) = want.items()
        if op == "exists":
            return (value is not _MISSING) == bool(arg)
        if op == "null":  # TOML has no null: { null = true } matches a JSON null
            return value is not _MISSING and (value is None) == bool(arg)
        if value is _MISSING:
            return False
        try:
            return {
                "eq": lambda: value == arg,
                "ne": lambda: value != arg,
                "gt": lambda: value > arg,
                "gte": lambda: value >= arg,
                "lt": lambda: value < arg,
                "lte": lambda: value <= arg,
                "in": lambda: value in arg,
                "contains": lambda: arg in value,
            }[op]()
        except TypeError:
            return False
    if value is _MISSING:
        return False
    if isinstance(want, bool) or isinstance(value, bool):
        return type(want) is type(value) and want == value
    return value == want


def message_matches(msg: Msg, match: dict[str, Any]) -> bool:
    if not match:
        return True
    data = msg.json()
    if data is None:
        return False
    return all(value_matches(lookup(data, path), want) for path, want in match.items())


def _brief(msg: Msg, limit: int = 160) -> str:
    text = msg.payload.decode("utf-8", "replace")
    return f"{msg.t:.2f} s {msg.topic} {text[:limit]}{'…' if len(text) > limit else ''}"


def describe_expected(exp: Expectation) -> str:
    a = exp.args
    anchor = f"after {a['after']}" if a.get("after") else (f"from {a['at']:g} s" if a.get("at") is not None else "from 0 s")
    match = _match_text(a.get("match") or {})
    if exp.kind == "message":
        return f"{a['topic']} {match} within {a['within_ms']:g} ms {anchor}"
    if exp.kind == "no_message":
        span = f"for {a['for_s']:g} s" if a.get("for_s") else "until the end"
        return f"no {a['topic']} {match} {anchor} {span}"
    if exp.kind == "sequence":
        return f"{a['topic']} " + " → ".join(_match_text(m) for m in a["matches"]) + f" within {a['within_ms']:g} ms {anchor}"
    if exp.kind == "led":
        return f"LED {a['led']} {a['state']} (held {a['hold_ms']:g} ms) within {a['within_ms']:g} ms {anchor}"
    if exp.kind == "telemetry_complete":
        return f"every telemetry seq made from {a['from_s']:g} s to {_end(a)} delivered (live or backlog)"
    if exp.kind == "cadence":
        longest = a["max_interval_s"] or 2 / a["rate_hz"]
        return (f"live telemetry every {1 / a['rate_hz']:g} s ±{a['tolerance'] * 100:g} % "
                f"for ≥{a['min_share'] * 100:g} % of intervals, none over {longest:g} s, {a['from_s']:g} s to {_end(a)}")
    if exp.kind == "position":
        return f"published positions within {a['max_m']:g} m of the emulated route (p95), {a['from_s']:g} s to {_end(a)}"
    if exp.kind == "agent_alive":
        return "the agent process still running at the end"
    if exp.kind == "seq_accounted":
        declared = f"declared lost ≥ {a['declared_lost_min']}"
        if a["declared_lost_max"] is not None:
            declared += f" and ≤ {a['declared_lost_max']}"
        return f"every telemetry seq received or declared by a birth: lost in transit ≤ {a['lost_in_transit_max']}, {declared}"
    return exp.kind


def _end(args: dict[str, Any]) -> str:
    return f"{args['to_s']:g} s" if args.get("to_s") is not None else "the end"


# -------------------------------------------------------------- message kinds


def _message(exp: Expectation, log: RunLog, anchor: float) -> Outcome:
    a = exp.args
    deadline = anchor + a["within_ms"] / 1000.0
    on_topic = [m for m in log.messages if m.topic == a["topic"] and m.t >= anchor]
    for m in on_topic:
        if message_matches(m, a["match"]):
            latency = (m.t - anchor) * 1000.0
            ok = m.t <= deadline
            seen = f"at {m.t:.3f} s ({latency:.0f} ms): {_brief(m)}"
            return Outcome(exp.name, exp.kind, ok, describe_expected(exp), seen, m.t, latency)
    if on_topic:
        seen = f"{len(on_topic)} message(s) on {a['topic']} after {anchor:.2f} s, none matching; last: {_brief(on_topic[-1])}"
    else:
        seen = f"nothing on {a['topic']} after {anchor:.2f} s (run ended at {log.end_t:.1f} s)"
    return Outcome(exp.name, exp.kind, False, describe_expected(exp), seen)


def _no_message(exp: Expectation, log: RunLog, anchor: float) -> Outcome:
    a = exp.args
    until = anchor + a["for_s"] if a.get("for_s") else math.inf
    for m in log.messages:
        if m.topic == a["topic"] and anchor <= m.t <= until and message_matches(m, a["match"]):
            return Outcome(exp.name, exp.kind, False, describe_expected(exp), f"got {_brief(m)}", m.t)
    return Outcome(exp.name, exp.kind, True, describe_expected(exp), f"none until {min(until, log.end_t):.1f} s")


def _sequence(exp: Expectation, log: RunLog, anchor: float) -> Outcome:
    a = exp.args
    deadline = anchor + a["within_ms"] / 1000.0
    t = anchor
    found: list[Msg] = []
    msgs = [m for m in log.messages if m.topic == a["topic"]]
    for match in a["matches"]:
        hit = next((m for m in msgs if m.t >= t and message_matches(m, match)), None)
        if hit is None:
            seen = f"matched {len(found)} of {len(a['matches'])}; missing {_match_text(match)} after {t:.2f} s"
            return Outcome(exp.name, exp.kind, False, describe_expected(exp), seen, data={"times": [m.t for m in found]})
        found.append(hit)
        t = hit.t
    latency = (found[-1].t - anchor) * 1000.0
    seen = "; ".join(f"{m.t:.2f} s" for m in found)
    return Outcome(exp.name, exp.kind, found[-1].t <= deadline, describe_expected(exp), seen, found[-1].t, latency,
                   {"times": [m.t for m in found]})


# ------------------------------------------------------------ telemetry kinds


def _telemetry(log: RunLog) -> list[tuple[Msg, dict[str, Any]]]:
    out = []
    for m in log.messages:
        if m.topic in TELEMETRY_TOPICS:
            data = m.json()
            if isinstance(data, dict) and isinstance(data.get("seq"), int):
                out.append((m, data))
    return out


def _telemetry_complete(exp: Expectation, log: RunLog, _anchor: float) -> Outcome:
    a = exp.args
    start = a["from_s"]
    end = a["to_s"] if a.get("to_s") is not None else log.end_t - a["settle_s"]
    reports = _telemetry(log)
    seen_seqs = {d["seq"] for _, d in reports}
    live_in = [d["seq"] for m, d in reports if m.topic == "telemetry" and start <= m.t <= end]
    after_start = [d["seq"] for m, d in reports if m.t >= start]
    if not live_in or not after_start:
        return Outcome(exp.name, exp.kind, False, describe_expected(exp), f"no live telemetry between {start:g} and {end:.1f} s")
    lo, hi = min(after_start), max(live_in)
    missing = sorted(set(range(lo, hi + 1)) - seen_seqs)
    backlog = sum(1 for m, _ in reports if m.topic == "telemetry/backlog")
    counts: dict[int, int] = {}
    for _, d in reports:
        counts[d["seq"]] = counts.get(d["seq"], 0) + 1
    dups = sum(c - 1 for c in counts.values())
    expected_n = max(1, int((end - start) * 0.8))  # at least 0.8 Hz: a silent agent must not pass
    n = hi - lo + 1
    ok = not missing and n >= expected_n
    seen = f"seq {lo}..{hi} ({n} reports, {backlog} via backlog, {dups} duplicate(s))"
    if missing:
        seen += f"; missing {len(missing)}: {ranges(missing, most=20)}"
    if n < expected_n:
        seen += f"; fewer than the {expected_n} reports 0.8 Hz would give"
    return Outcome(exp.name, exp.kind, ok, describe_expected(exp), seen, data={
        "lo": lo, "hi": hi, "missing": missing[:200], "backlog": backlog, "duplicates": dups})


def _cadence(exp: Expectation, log: RunLog, _anchor: float) -> Outcome:
    a = exp.args
    end = a["to_s"] if a.get("to_s") is not None else log.end_t
    times = [m.t for m, _ in _telemetry(log) if m.topic == "telemetry" and a["from_s"] <= m.t <= end]
    if len(times) < 3:
        return Outcome(exp.name, exp.kind, False, describe_expected(exp), f"{len(times)} live report(s): too few to judge")
    period = 1.0 / a["rate_hz"]
    intervals = [b - t for t, b in zip(times, times[1:])]
    good = sum(1 for d in intervals if abs(d - period) <= a["tolerance"] * period)
    share = good / len(intervals)
    srt = sorted(intervals)
    p95 = percentile(srt, 95)
    mean = sum(intervals) / len(intervals)
    seen = (f"{share * 100:.1f} % of {len(intervals)} intervals in tolerance; mean {mean:.3f} s, "
            f"p95 {p95:.3f} s, max {srt[-1]:.3f} s")
    longest = a["max_interval_s"] or 2 * period
    ok = share >= a["min_share"] and srt[-1] <= longest
    if srt[-1] > longest:
        seen += f"; a gap of {srt[-1]:.3f} s exceeds {longest:g} s"
    return Outcome(exp.name, exp.kind, ok, describe_expected(exp), seen, data={
        "times": [round(t, 4) for t in times[1:]], "intervals": [round(d, 4) for d in intervals],
        "mean": mean, "p95": p95})


def distance_m(lat1: float, lon1: float, lat2: float, lon2: float) -> float:
    r = 6_371_008.8
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lon2 - lon1)
    h = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return 2 * r * math.asin(min(1.0, math.sqrt(h)))


def parse_utc(text: Any) -> dt.datetime | None:
    """An ISO 8601 time from a payload (``Z`` or an offset; none means UTC), None if it is not one."""
    if not isinstance(text, str):
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.timezone.utc)


def _position(exp: Expectation, log: RunLog, _anchor: float) -> Outcome:
    a = exp.args
    end = a["to_s"] if a.get("to_s") is not None else log.end_t
    truth = sorted(log.truth, key=lambda p: p.utc)
    stamps = [p.utc.timestamp() for p in truth]
    errors: list[tuple[float, float]] = []
    unmatched = 0
    for m, d in _telemetry(log):
        if m.topic != "telemetry" or not (a["from_s"] <= m.t <= end):
            continue
        fix = d.get("fix") or {}
        if not isinstance(fix, dict) or (fix.get("mode") or 0) < 2 or fix.get("lat") is None:
            continue
        when = parse_utc(fix.get("time"))
        point = _nearest(truth, stamps, when.timestamp()) if when else None
        if point is None:
            unmatched += 1
            continue
        errors.append((m.t, distance_m(point.lat, point.lon, fix["lat"], fix["lon"])))
    if len(errors) < a["min_points"]:
        return Outcome(exp.name, exp.kind, False, describe_expected(exp),
                       f"{len(errors)} position(s) matched to the route by fix time ({unmatched} unmatched)")
    srt = sorted(e for _, e in errors)
    p95 = percentile(srt, 95)
    seen = f"p95 {p95:.1f} m, max {srt[-1]:.1f} m over {len(errors)} fixes ({unmatched} unmatched)"
    return Outcome(exp.name, exp.kind, p95 <= a["max_m"], describe_expected(exp), seen, data={
        "errors": [[round(t, 3), round(e, 2)] for t, e in errors], "p95": p95})


def _nearest(points: list[Any], stamps: list[float], t: float, tolerance: float = 0.05) -> Any:
    """The truth point whose UTC is within ``tolerance`` s of ``t`` (the epoch the fix came from)."""
    i = bisect.bisect_left(stamps, t)
    best = None
    for j in (i - 1, i):
        if 0 <= j < len(stamps) and abs(stamps[j] - t) <= tolerance:
            if best is None or abs(stamps[j] - t) < abs(stamps[best] - t):
                best = j
    return points[best] if best is not None else None


# --------------------------------------------------------------------- LEDs


def _levels(log: RunLog, led: str) -> list[PinSample]:
    """The output's timeline; the status LED's level is an index into COLOURS order."""
    if led != "status":
        return log.pins.get(led, [])
    channels = [log.pins.get(f"status_{c}", []) for c in ("red", "green", "blue")]
    times = sorted({s.t for ch in channels for s in ch})
    out: list[PinSample] = []
    for t in times:
        rgb = tuple(_level_at(ch, t) for ch in channels)
        code = rgb[0] * 4 + rgb[1] * 2 + rgb[2]
        if not out or out[-1].level != code:
            out.append(PinSample(t, code))
    return out


def _level_at(samples: list[PinSample], t: float) -> int:
    level = 0
    for s in samples:
        if s.t > t:
            break
        level = s.level
    return level


def _colour_code(name: str) -> int:
    r, g, b = COLOURS[name]
    return r * 4 + g * 2 + b


def _colour_name(code: int) -> str:
    for name, (r, g, b) in COLOURS.items():
        if r * 4 + g * 2 + b == code:
            return name
    return str(code)


def _led(exp: Expectation, log: RunLog, anchor: float) -> Outcome:
    a = exp.args
    samples = _levels(log, a["led"])
    deadline = anchor + a["within_ms"] / 1000.0
    hold = a["hold_ms"] / 1000.0
    state = a["state"]
    candidates = [anchor] + [s.t for s in samples if anchor < s.t <= deadline]
    describe = _colour_name if a["led"] == "status" else str
    for t0 in candidates:
        t1 = t0 + (max(hold, BLINK_WINDOW_S) if state == "blinking" else hold)
        if t1 > log.end_t:
            break
        changes = [s for s in samples if t0 < s.t <= t1]
        if state == "blinking":
            ok = len(changes) >= 2  # off-on-off (or on-off-on): it blinks
        else:
            want = _colour_code(state) if a["led"] == "status" else (1 if state == "on" else 0)
            ok = _level_at(samples, t0) == want and all(s.level == want for s in changes)
        if ok:
            latency = (t0 - anchor) * 1000.0
            return Outcome(exp.name, exp.kind, True, describe_expected(exp), f"{state} from {t0:.3f} s ({latency:.0f} ms)", t0, latency)
    window = [s for s in samples if anchor - 0.001 <= s.t <= deadline + hold]
    now = describe(_level_at(samples, anchor))
    seen = f"{a['led']} was {now} at {anchor:.2f} s; {len(window)} change(s) until {deadline + hold:.2f} s"
    if window:
        seen += ": " + ", ".join(f"{s.t:.2f}→{describe(s.level)}" for s in window[:12])
    return Outcome(exp.name, exp.kind, False, describe_expected(exp), seen)


def _agent_alive(exp: Expectation, log: RunLog, _anchor: float) -> Outcome:
    if log.agent_exit is None:
        return Outcome(exp.name, exp.kind, True, describe_expected(exp), f"running at {log.end_t:.1f} s")
    tail = log.agent_output.strip().splitlines()[-3:]
    return Outcome(exp.name, exp.kind, False, describe_expected(exp), f"exited with {log.agent_exit}: {' | '.join(tail)}")


def _seq_accounted(exp: Expectation, log: RunLog, _anchor: float) -> Outcome:
    a = exp.args
    ledger = SeqLedger()
    for m in log.messages:
        ledger.on_message(m.topic, m.payload)
    summary = ledger.summary()
    transit, declared = len(summary.lost_in_transit), len(summary.declared_lost)
    ok = (summary.lo is not None and transit <= a["lost_in_transit_max"] and declared >= a["declared_lost_min"]
          and (a["declared_lost_max"] is None or declared <= a["declared_lost_max"]))
    seen = summary.text()
    if summary.declared:
        seen += "; declared " + ", ".join(f"{lo}-{hi}" for lo, hi in summary.declared)
    return Outcome(exp.name, exp.kind, ok, describe_expected(exp), seen, data=summary.to_json())


_HANDLERS = {
    "message": _message,
    "no_message": _no_message,
    "sequence": _sequence,
    "telemetry_complete": _telemetry_complete,
    "cadence": _cadence,
    "position": _position,
    "led": _led,
    "agent_alive": _agent_alive,
    "seq_accounted": _seq_accounted,
}
