"""Scenario files: a timeline of steps and the expectations that judge a run.

A scenario is a TOML file (``hil/scenarios/*.toml`` ship with the rig). It is
parsed once into frozen dataclasses; anything wrong is a
:class:`ScenarioError` naming the file, the key path (``step[3].button``) and
what is wrong, every problem at once, so an author fixes a file in one go.

Time: ``t = 0`` is the moment the agent under test announced itself on the
broker (its ``online`` birth message), so start-up time never eats into a
scenario. Step times (``at``) and windows are in scenario seconds;
``umps-hil run --speed F`` divides them by ``F`` (latency limits, ``within_ms``,
are never scaled: they are what the crew and dispatch feel).

The format (see ``hil/README.md`` for the full reference)::

    [scenario]
    name = "full-call"                # default: the file's stem
    description = "..."
    duration_s = 30                   # the run ends then
    unit_kind = "car"                 # "car" or "motorcycle"
    profile = "short"                 # "short" (CI) or "long"
    gnss_rate_hz = 1                  # 1, 5 or 10
    route_offset_s = 0                # start that far along the route
    signed_dispatch = false           # true: the unit lists a rig dispatch key; calls and alarm messages are signed
    keep_state = false                # true: start on the state directory the last run left (default: empty)

    [agent]                           # partial agent config merged over the rig's
    panel = { emergency_hold_s = 1.0 }

    [[step]]
    at = 5
    id = "press-en-route"             # default "<action>@<at>"
    action = "press"
    button = "en_route"

    [[expect]]
    name = "status goes en_route"     # default: built from the fields
    kind = "message"
    after = "press-en-route"          # a step id, or at = seconds
    topic = "status"
    match = { status = "en_route" }
    within_ms = 500

Step actions and their fields are in :data:`ACTIONS`; expectation kinds and
theirs in :data:`EXPECT_KINDS`. Unknown keys are errors.
"""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from agent.config import INPUT_NAMES, OUTPUT_NAMES
from hil.gnss_faults import ALIASES, FAULT_KINDS

SCENARIO_DIR = Path(__file__).parent / "scenarios"

# action -> (required fields, optional fields with defaults)
ACTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    "tap": (("button",), {"ms": 200.0}),
    "press": (("button",), {}),
    "release": (("button",), {}),
    "hold": (("button", "seconds"), {}),
    "bounce": (("button",), {"n": 6, "interval_ms": 2.0}),
    "siren": (("on",), {}),
    "gnss_fault": (("fault",), {"duration_s": None, "ratio": 1.0}),
    "gnss_clear": ((), {"fault": None}),
    "unplug": ((), {"duration_s": None}),
    "replug": ((), {}),
    "link_down": ((), {"mode": "blackhole"}),
    "link_up": ((), {}),
    "broker_stop": ((), {}),
    "broker_kill": ((), {}),
    "broker_start": ((), {}),
    "call": (("call_id",), {"priority": 2, "nature": "Contrôle", "address": "Av. Mohammed V, Kénitra",
                             "location": None, "details": None, "code": None}),
    "call_update": (("call_id",), {"details": None, "priority": None, "address": None}),
    "call_cancel": (("call_id",), {"reason": None}),
    "alarm_ack": ((), {"alarm_id": None}),
    "alarm_clear": ((), {"alarm_id": None}),
    "config_push": (("request_id", "version"), {"config": None}),
    "cmd": (("command",), {"request_id": None}),
    "publish": (("topic", "payload"), {"qos": 1, "retain": False}),
    # The vehicle's power: the ignition line; the hold-up supply's warning, then the cut after
    # its hold-up time (and the power back after off_s, if given: the agent restarts on the same
    # state); a cut without warning (kill -9), then the power back after off_s; the power back.
    "ignition": (("on",), {}),
    "power_fail": ((), {"hold_up_s": 2.0, "off_s": None}),
    "power_cut": ((), {"off_s": 2.0}),
    "power_on": ((), {}),
}

# kind -> (required fields, optional fields with defaults)
EXPECT_KINDS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    # A message on `topic` matching `match`, within `within_ms` of the anchor.
    "message": (("topic",), {"match": {}, "within_ms": 1000.0, "after": None, "at": None}),
    # No message on `topic` matching `match` in the window [anchor, anchor + for_s].
    "no_message": (("topic",), {"match": {}, "for_s": None, "after": None, "at": None}),
    # Messages on `topic` matching `match`, in this order, each after the one before.
    "sequence": (("topic", "matches"), {"within_ms": 1000.0, "after": None, "at": None}),
    # Every telemetry seq from the first to the last made in [from_s, to_s] was
    # delivered (live or backlog), none missing.
    "telemetry_complete": ((), {"from_s": 0.0, "to_s": None, "settle_s": 15.0}),
    # Live telemetry arrives every 1/rate_hz: the share of intervals within tolerance,
    # and no interval longer than max_interval_s (default two periods).
    "cadence": ((), {"rate_hz": 1.0, "tolerance": 0.5, "min_share": 0.9, "from_s": 0.0, "to_s": None,
                     "max_interval_s": None}),
    # Published positions stay within max_m of where the emulated vehicle was (p95).
    "position": ((), {"max_m": 25.0, "from_s": 0.0, "to_s": None, "min_points": 5}),
    # An LED (or the status RGB colour, or the buzzer) shows `state` within `within_ms`.
    "led": (("led", "state"), {"within_ms": 1000.0, "hold_ms": 400.0, "after": None, "at": None}),
    # The agent process is still running at the end (no crash).
    "agent_alive": ((), {}),
    # The consumer's seq account (hil/seq_ledger.py, docs/mqtt-api.md "Counting lost reports"):
    # every seq received or inside a gap a birth declared; bounds on each count.
    "seq_accounted": ((), {"lost_in_transit_max": 0, "declared_lost_min": 0, "declared_lost_max": None}),
}

LED_STATES = ("on", "off", "blinking")
COLOURS: dict[str, tuple[int, int, int]] = {
    "off": (0, 0, 0), "green": (0, 1, 0), "blue": (0, 0, 1), "yellow": (1, 1, 0),
    "red": (1, 0, 0), "magenta": (1, 0, 1), "white": (1, 1, 1), "cyan": (0, 1, 1),
}
LED_NAMES = ("status", *(n for n in OUTPUT_NAMES if not n.startswith("status_")))
MATCH_OPERATORS = ("eq", "ne", "gt", "gte", "lt", "lte", "in", "exists", "contains", "null")
PROFILES = ("short", "long")


class ScenarioError(ValueError):
    """A scenario file is unusable; ``problems`` lists ``(key path, message)``."""

    def __init__(self, source: str, problems: list[tuple[str, str]]):
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  {loc or '<file>'}: {msg}" for loc, msg in problems)
        super().__init__(f"{source}: {len(problems)} problem(s)\n{lines}")


@dataclass(frozen=True, slots=True)
class Step:
    index: int
    id: str
    at: float
    action: str
    args: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Expectation:
    index: int
    name: str
    kind: str
    args: dict[str, Any]

    @property
    def anchor(self) -> tuple[str | None, float | None]:
        return self.args.get("after"), self.args.get("at")


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    duration_s: float
    unit_kind: str
    profile: str
    gnss_rate_hz: int
    route_offset_s: float
    agent: dict[str, Any]
    steps: tuple[Step, ...]
    expectations: tuple[Expectation, ...]
    source: str = ""
    step_by_id: dict[str, Step] = field(default_factory=dict, compare=False)
    # The unit lists a dispatch key of the rig's and the rig's dispatcher signs (docs/mqtt-api.md).
    signed_dispatch: bool = False
    # Start on the state directory the last run of this scenario left (default: an empty one).
    keep_state: bool = False

    @property
    def needs_link_proxy(self) -> bool:
        return any(s.action in ("link_down", "link_up") for s in self.steps)

    def scaled(self, speed: float) -> "Scenario":
        """The same scenario with its timeline compressed by ``speed`` (latencies unchanged)."""
        if speed == 1.0:
            return self
        steps = tuple(Step(s.index, s.id, s.at / speed, s.action, _scale_step(s, speed)) for s in self.steps)
        exps = tuple(Expectation(e.index, e.name, e.kind, _scale_expect(e.args, speed)) for e in self.expectations)
        return Scenario(
            self.name, self.description, self.duration_s / speed, self.unit_kind, self.profile, self.gnss_rate_hz,
            self.route_offset_s, self.agent, steps, exps, self.source, {s.id: s for s in steps},
            self.signed_dispatch, self.keep_state,
        )


def _scale_step(step: Step, speed: float) -> dict[str, Any]:
    args = dict(step.args)
    for key in ("duration_s",):
        if args.get(key) is not None:
            args[key] = args[key] / speed
    return args


def _scale_expect(args: dict[str, Any], speed: float) -> dict[str, Any]:
    out = dict(args)
    for key in ("at", "from_s", "to_s", "for_s"):
        if out.get(key) is not None:
            out[key] = out[key] / speed
    return out


# ------------------------------------------------------------------ parsing


def load_scenario(path: str | Path) -> Scenario:
    """Read and validate one scenario file; a bare name looks in ``hil/scenarios``."""
    path = resolve(path)
    try:
        text = path.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ScenarioError(str(path), [("", f"cannot read: {exc.strerror or exc}")]) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(str(path), [("", f"not UTF-8: {exc}")]) from None
    return parse_scenario(text, str(path), default_name=path.stem)


def resolve(path: str | Path) -> Path:
    p = Path(path)
    if p.exists() or p.is_absolute() or "/" in str(path):
        return p
    shipped = SCENARIO_DIR / (p.name if p.suffix == ".toml" else f"{p.name}.toml")
    return shipped if shipped.exists() else p


def shipped_scenarios() -> list[Path]:
    return sorted(SCENARIO_DIR.glob("*.toml"))


def parse_scenario(text: str, source: str = "<scenario>", *, default_name: str = "scenario") -> Scenario:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, [("", f"TOML syntax: {exc}")]) from None
    return _Parser(source, default_name).parse(data)


class _Parser:
    def __init__(self, source: str, default_name: str):
        self.source = source
        self.default_name = default_name
        self.problems: list[tuple[str, str]] = []

    def fail(self, loc: str, msg: str) -> None:
        self.problems.append((loc, msg))

    def parse(self, data: dict[str, Any]) -> Scenario:
        for key in data:
            if key not in ("scenario", "agent", "step", "expect"):
                self.fail(key, "unknown table (known: scenario, agent, step, expect)")
        head = data.get("scenario")
        if not isinstance(head, dict):
            self.fail("scenario", "missing [scenario] table")
            head = {}
        known = {"name", "description", "duration_s", "unit_kind", "profile", "gnss_rate_hz", "route_offset_s",
                 "signed_dispatch", "keep_state"}
        for key in head:
            if key not in known:
                self.fail(f"scenario.{key}", "unknown key")
        name = self._str(head, "name", "scenario", self.default_name)
        description = self._str(head, "description", "scenario", "")
        duration = self._number(head, "duration_s", "scenario", None)
        if duration is None:
            self.fail("scenario.duration_s", "required: how long the run lasts, in seconds")
            duration = 0.0
        elif duration <= 0:
            self.fail("scenario.duration_s", "must be > 0")
        unit_kind = self._choice(head, "unit_kind", "scenario", ("car", "motorcycle"), "car")
        profile = self._choice(head, "profile", "scenario", PROFILES, "short")
        rate = head.get("gnss_rate_hz", 1)
        if rate not in (1, 5, 10) or isinstance(rate, bool):
            self.fail("scenario.gnss_rate_hz", f"must be 1, 5 or 10, not {rate!r}")
            rate = 1
        offset = self._number(head, "route_offset_s", "scenario", 0.0) or 0.0
        signed = head.get("signed_dispatch", False)
        if not isinstance(signed, bool):
            self.fail("scenario.signed_dispatch", "must be true or false")
            signed = False
        keep_state = head.get("keep_state", False)
        if not isinstance(keep_state, bool):
            self.fail("scenario.keep_state", "must be true or false")
            keep_state = False

        agent = data.get("agent", {})
        if not isinstance(agent, dict):
            self.fail("agent", "must be a table (a partial agent configuration)")
            agent = {}
        for forbidden in ("mqtt", "storage"):
            if forbidden in agent:
                self.fail(f"agent.{forbidden}", "is set by the rig (broker and state directory are the rig's)")

        steps = self._steps(data.get("step", []), duration)
        by_id = {s.id: s for s in steps}
        expectations = self._expectations(data.get("expect", []), by_id, duration)
        if self.problems:
            raise ScenarioError(self.source, self.problems)
        return Scenario(name, description, float(duration), unit_kind, profile, int(rate), float(offset),
                        agent, tuple(steps), tuple(expectations), self.source, by_id, signed, keep_state)

    # ------------------------------------------------------------- steps

    def _steps(self, raw: Any, duration: float) -> list[Step]:
        if not isinstance(raw, list):
            self.fail("step", "must be an array of tables: [[step]]")
            return []
        steps: list[Step] = []
        seen: set[str] = set()
        for i, item in enumerate(raw):
            loc = f"step[{i}]"
            if not isinstance(item, dict):
                self.fail(loc, "must be a table")
                continue
            action = item.get("action")
            if action not in ACTIONS:
                self.fail(f"{loc}.action", f"unknown action {action!r}; known: {', '.join(ACTIONS)}")
                continue
            at = self._number(item, "at", loc, None)
            if at is None:
                self.fail(f"{loc}.at", "required: when the step happens, in seconds")
                continue
            if at < 0 or (duration and at > duration):
                self.fail(f"{loc}.at", f"must be within 0..duration_s ({duration}), not {at}")
            required, optional = ACTIONS[action]
            args = self._fields(item, loc, required, optional, extra=("at", "action", "id"))
            step_id = item.get("id", f"{action}@{at:g}")
            if not isinstance(step_id, str) or not step_id:
                self.fail(f"{loc}.id", "must be a non-empty string")
                step_id = f"{action}@{at:g}"
            if step_id in seen:
                self.fail(f"{loc}.id", f"duplicate step id {step_id!r}")
            seen.add(step_id)
            self._check_step(action, args, loc)
            steps.append(Step(i, step_id, float(at), action, args))
        return sorted(steps, key=lambda s: (s.at, s.index))

    def _check_step(self, action: str, args: dict[str, Any], loc: str) -> None:
        if "button" in args and args["button"] not in INPUT_NAMES:
            self.fail(f"{loc}.button", f"unknown input {args['button']!r}; known: {', '.join(INPUT_NAMES)}")
        if action == "tap" and not _is_number(args["ms"], positive=True):
            self.fail(f"{loc}.ms", "must be a number of milliseconds > 0")
        if action == "hold" and "seconds" in args and not _is_number(args["seconds"], positive=True):
            self.fail(f"{loc}.seconds", "must be a number > 0")
        if action in ("siren", "ignition") and not isinstance(args.get("on"), bool):
            self.fail(f"{loc}.on", "must be true or false")
        for key in ("hold_up_s", "off_s"):
            if action in ("power_fail", "power_cut") and args.get(key) is not None \
                    and not _is_number(args[key], positive=True):
                self.fail(f"{loc}.{key}", "must be a number of seconds > 0")
        if action in ("gnss_fault", "gnss_clear") and args.get("fault") is not None:
            if args["fault"] not in FAULT_KINDS and args["fault"] not in ALIASES:
                self.fail(f"{loc}.fault", f"unknown fault {args['fault']!r}; known: {', '.join(FAULT_KINDS + tuple(ALIASES))}")
        if action == "gnss_fault" and args.get("fault") == "unplug":
            self.fail(f"{loc}.fault", "use action = \"unplug\" for the receiver's plug")
        for key in ("duration_s",):
            if args.get(key) is not None and not _is_number(args[key], positive=True):
                self.fail(f"{loc}.{key}", "must be a number > 0")
        if action == "call" and args.get("priority") not in (1, 2, 3):
            self.fail(f"{loc}.priority", "must be 1, 2 or 3")
        if action == "config_push":
            if not isinstance(args.get("version"), int) or isinstance(args.get("version"), bool):
                self.fail(f"{loc}.version", "must be an integer")
            if args.get("config") is not None and not isinstance(args["config"], dict):
                self.fail(f"{loc}.config", "must be a table (a partial agent configuration)")
        if action == "link_down" and args.get("mode") not in ("blackhole", "drop"):
            self.fail(f"{loc}.mode", "must be \"blackhole\" (the link stalls) or \"drop\" (connections cut)")
        if action == "cmd" and args.get("command") not in ("report_position", "flush_backlog"):
            self.fail(f"{loc}.command", "must be \"report_position\" or \"flush_backlog\"")
        if action == "publish":
            if not isinstance(args.get("topic"), str) or not args["topic"] or "#" in args["topic"] or "+" in args["topic"]:
                self.fail(f"{loc}.topic", "must be a topic under the unit (e.g. \"call\"), without wildcards")
            if not isinstance(args.get("payload"), (str, dict)):
                self.fail(f"{loc}.payload", "must be a string (sent as is) or a table (sent as JSON)")

    # ------------------------------------------------------ expectations

    def _expectations(self, raw: Any, steps: dict[str, Step], duration: float) -> list[Expectation]:
        if not isinstance(raw, list):
            self.fail("expect", "must be an array of tables: [[expect]]")
            return []
        out: list[Expectation] = []
        for i, item in enumerate(raw):
            loc = f"expect[{i}]"
            if not isinstance(item, dict):
                self.fail(loc, "must be a table")
                continue
            kind = item.get("kind")
            if kind not in EXPECT_KINDS:
                self.fail(f"{loc}.kind", f"unknown kind {kind!r}; known: {', '.join(EXPECT_KINDS)}")
                continue
            required, optional = EXPECT_KINDS[kind]
            args = self._fields(item, loc, required, optional, extra=("kind", "name"))
            after, at = args.get("after"), args.get("at")
            if "after" in optional:
                if after is not None and at is not None:
                    self.fail(loc, "give either after (a step id) or at (seconds), not both")
                if after is not None and after not in steps:
                    self.fail(f"{loc}.after", f"no step with id {after!r}; steps: {', '.join(steps) or '(none)'}")
                if at is not None and not _is_number(at):
                    self.fail(f"{loc}.at", "must be a number of seconds")
            for key in ("within_ms", "hold_ms", "for_s", "max_m", "rate_hz", "settle_s", "max_interval_s"):
                if key in args and args[key] is not None and not _is_number(args[key], positive=True):
                    self.fail(f"{loc}.{key}", "must be a number > 0")
            for key in ("from_s", "to_s"):
                if args.get(key) is not None and not _is_number(args[key]):
                    self.fail(f"{loc}.{key}", "must be a number of seconds")
            if "match" in args:
                self._check_match(args["match"], f"{loc}.match")
            if kind == "sequence":
                if not isinstance(args.get("matches"), list) or not args["matches"]:
                    self.fail(f"{loc}.matches", "must be a non-empty array of match tables")
                else:
                    for j, m in enumerate(args["matches"]):
                        self._check_match(m, f"{loc}.matches[{j}]")
            if kind == "led":
                self._check_led(args, loc)
            name = item.get("name") or _default_name(kind, args)
            out.append(Expectation(i, str(name), kind, args))
        return out

    def _check_led(self, args: dict[str, Any], loc: str) -> None:
        if args["led"] not in LED_NAMES:
            self.fail(f"{loc}.led", f"unknown output {args['led']!r}; known: {', '.join(LED_NAMES)}")
        elif args["led"] == "status":
            if args["state"] not in COLOURS:
                self.fail(f"{loc}.state", f"the status LED takes a colour: {', '.join(COLOURS)}")
        elif args["state"] not in LED_STATES:
            self.fail(f"{loc}.state", f"must be one of {', '.join(LED_STATES)}")

    def _check_match(self, match: Any, loc: str) -> None:
        if not isinstance(match, dict):
            self.fail(loc, "must be a table of dotted payload keys to values, e.g. { status = \"en_route\" }")
            return
        for key, value in match.items():
            if isinstance(value, dict):
                bad = [op for op in value if op not in MATCH_OPERATORS]
                if bad or len(value) != 1:
                    self.fail(f"{loc}.{key}", f"an operator table has exactly one of {', '.join(MATCH_OPERATORS)}")

    # ----------------------------------------------------------- helpers

    def _fields(self, item: dict[str, Any], loc: str, required: tuple[str, ...], optional: dict[str, Any],
                extra: tuple[str, ...]) -> dict[str, Any]:
        args = dict(optional)
        for key in required:
            if key not in item:
                self.fail(f"{loc}.{key}", "required")
        for key, value in item.items():
            if key in extra:
                continue
            if key not in required and key not in optional:
                known = ", ".join((*required, *optional)) or "(none)"
                self.fail(f"{loc}.{key}", f"unknown key; this one takes: {known}")
                continue
            args[key] = value
        return args

    def _str(self, table: dict[str, Any], key: str, loc: str, default: str) -> str:
        value = table.get(key, default)
        if not isinstance(value, str):
            self.fail(f"{loc}.{key}", "must be a string")
            return default
        return value

    def _number(self, table: dict[str, Any], key: str, loc: str, default: float | None) -> float | None:
        value = table.get(key, default)
        if value is None:
            return None
        if not _is_number(value):
            self.fail(f"{loc}.{key}", f"must be a number, not {value!r}")
            return default
        return float(value)

    def _choice(self, table: dict[str, Any], key: str, loc: str, choices: tuple[str, ...], default: str) -> str:
        value = table.get(key, default)
        if value not in choices:
            self.fail(f"{loc}.{key}", f"must be one of {', '.join(choices)}, not {value!r}")
            return default
        return value


def _is_number(value: Any, *, positive: bool = False) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    return value > 0 if positive else True


_OP_TEXT = {"eq": "=", "ne": "≠", "gt": ">", "gte": "≥", "lt": "<", "lte": "≤", "in": " in ", "contains": " contains "}


def match_text(match: dict[str, Any]) -> str:
    """A match table as people read it: ``{status="en_route", fix.mode≥2}``."""
    if not match:
        return "(any)"

    def one(key: str, want: Any) -> str:
        if isinstance(want, dict) and len(want) == 1:
            ((op, arg),) = want.items()
            if op == "exists":
                return key if arg else f"no {key}"
            if op == "null":
                return f"{key}=null" if arg else f"{key}≠null"
            if op in _OP_TEXT:
                return f"{key}{_OP_TEXT[op]}{json.dumps(arg, ensure_ascii=False)}"
        return f"{key}={json.dumps(want, ensure_ascii=False)}"

    return "{" + ", ".join(one(k, v) for k, v in match.items()) + "}"


def _default_name(kind: str, args: dict[str, Any]) -> str:
    anchor = f" after {args['after']}" if args.get("after") else (f" at {args['at']:g} s" if args.get("at") is not None else "")
    if kind in ("message", "no_message"):
        what = f"{args['topic']}" + (f" {match_text(args['match'])}" if args.get("match") else "")
        return f"{'no ' if kind == 'no_message' else ''}{what}{anchor}"
    if kind == "led":
        return f"LED {args['led']} {args['state']}{anchor}"
    if kind == "sequence":
        return f"{args['topic']} sequence{anchor}"
    return kind.replace("_", " ")
