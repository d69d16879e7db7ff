"""Scenario files: a timeline of steps and the expectations that judge a run.

A scenario is a TOML file (``hil/scenarios/*.toml`` ship with the rig). It is
validated once by the pydantic models of ``hil.scenario_schema`` into frozen
dataclasses; anything wrong is a :class:`ScenarioError` (the agent's
``ProblemsError``, as a bad configuration is) naming the file, the key path
(``step[3].button``) and what is wrong in plain words, with the nearest known
key for a typo, every problem at once, so an author fixes a file in one go.

Time: ``t = 0`` is the moment the agent under test has announced itself on
the broker (its ``online`` birth message) and told systemd it is up
(``READY=1``: its link may connect before its core runs), so start-up time
never eats into a scenario. Step times (``at``) and windows are in scenario seconds;
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
    clock = "host"                    # "unsynchronised": the agent takes its clock as never synchronised
    gnss_at_start = "fix"             # "fix_lost" or "unplugged": no GNSS from before the agent starts

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

Step actions and their fields are in :data:`ACTIONS` (one model each in
``hil.scenario_schema.STEP_MODELS``); expectation kinds and theirs in
:data:`EXPECT_KINDS` (``EXPECT_MODELS``). Unknown keys are errors.
"""

from __future__ import annotations

import difflib
import json
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from agent.problems import ProblemsError
from hil import scenario_schema as schema

SCENARIO_DIR = Path(__file__).parent / "scenarios"

# action -> (required fields, optional fields with defaults); kind -> the same. From the models.
ACTIONS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    action: schema.fields_of(model, schema.Step) for action, model in schema.STEP_MODELS.items()
}
EXPECT_KINDS: dict[str, tuple[tuple[str, ...], dict[str, Any]]] = {
    kind: schema.fields_of(model, schema.Expect) for kind, model in schema.EXPECT_MODELS.items()
}


class ScenarioError(ProblemsError):
    """A scenario file is unusable; ``problems`` lists ``(key path, message)``."""


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
    clock: str = "host"  # "unsynchronised": the agent's system clock taken as never synchronised
    gnss_at_start: str = "fix"  # "fix_lost" or "unplugged" from before the agent starts

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
            self.signed_dispatch, self.keep_state, self.clock, self.gnss_at_start,
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
    """The scenario in ``text``; raises :class:`ScenarioError` with every problem of the file."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ScenarioError(source, [("", f"TOML syntax: {exc}")]) from None
    problems: list[tuple[str, str]] = []
    file = _validate(schema.File, data, "", problems)
    if file is None:  # the tables themselves are wrong: judge what can be judged
        file = schema.File.model_construct(**{
            "scenario": {}, "agent": {}, "step": [], "expect": [],
            **{k: v for k, v in data.items() if k in schema.TABLES and isinstance(v, (dict, list))},
        })
    head = _validate(schema.Head, file.scenario if isinstance(file.scenario, dict) else {}, "scenario",
                           problems)
    raw_duration = file.scenario.get("duration_s") if isinstance(file.scenario, dict) else None
    context = {"duration_s": raw_duration if schema.is_number(raw_duration) else None,
               "step_ids": _step_ids(file.step)}
    steps = _steps(file.step if isinstance(file.step, list) else [], context, problems)
    expectations = _expectations(file.expect if isinstance(file.expect, list) else [], context, problems)
    problems += [(f"agent.{key}", "is set by the rig (broker and state directory are the rig's)")
                 for key in ("mqtt", "storage") if isinstance(file.agent, dict) and key in file.agent]
    if problems or head is None:
        raise ScenarioError(source, problems)
    by_id = {s.id: s for s in steps}
    return Scenario(head.name or default_name, head.description, head.duration_s, head.unit_kind, head.profile,
                    head.gnss_rate_hz, head.route_offset_s, file.agent, tuple(steps), tuple(expectations), source,
                    by_id, head.signed_dispatch, head.keep_state, head.clock, head.gnss_at_start)


def _default_id(item: dict[str, Any]) -> str | None:
    at = item.get("at")
    return f"{item.get('action')}@{at:g}" if schema.is_number(at) else None


def _step_id(item: dict[str, Any]) -> str | None:
    """A step's id as written, or its default (``press@5``)."""
    given = item.get("id")
    return given if isinstance(given, str) and given else _default_id(item)


def _step_ids(raw: Any) -> list[str]:
    """The ids of the file's steps: what an ``after`` may name."""
    ids = (_step_id(item) for item in (raw if isinstance(raw, list) else []) if isinstance(item, dict))
    return [i for i in ids if i is not None]


def _steps(raw: list[Any], context: dict[str, Any], problems: list[tuple[str, str]]) -> list[Step]:
    steps: list[Step] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        loc = f"step[{i}]"
        model = schema.STEP_MODELS.get(item.get("action")) if isinstance(item, dict) else None
        if isinstance(item, dict) and model is None:
            problems.append((f"{loc}.action", f"unknown action {item.get('action')!r}; known: {', '.join(ACTIONS)}"))
            continue
        step_id = _step_id(item) if isinstance(item, dict) else None
        if step_id is not None and step_id in seen:
            problems.append((f"{loc}.id", f"duplicate step id {step_id!r}"))
        seen.add(step_id)
        step = _validate(model or schema.Step, item, loc, problems, context, schema.Step)
        if step is not None:
            steps.append(Step(i, step.id or _default_id(item), step.at, step.action,
                              step.model_dump(exclude={"at", "action", "id"})))
    return sorted(steps, key=lambda s: (s.at, s.index))


def _expectations(raw: list[Any], context: dict[str, Any], problems: list[tuple[str, str]]) -> list[Expectation]:
    out: list[Expectation] = []
    for i, item in enumerate(raw):
        loc = f"expect[{i}]"
        model = schema.EXPECT_MODELS.get(item.get("kind")) if isinstance(item, dict) else None
        if isinstance(item, dict) and model is None:
            problems.append((f"{loc}.kind", f"unknown kind {item.get('kind')!r}; known: {', '.join(EXPECT_KINDS)}"))
            continue
        expectation = _validate(model or schema.Expect, item, loc, problems, context, schema.Expect)
        if expectation is None:
            continue
        args = expectation.model_dump(exclude={"kind", "name"})
        name = expectation.name or _default_name(expectation.kind, args)
        out.append(Expectation(i, name, expectation.kind, args))
    return out


# ---------------------------------------------------------------- errors


def _validate(model: type[BaseModel], data: Any, loc: str, problems: list[tuple[str, str]],
             context: dict[str, Any] | None = None, common: type[BaseModel] | None = None) -> Any:
    """``model`` validated from ``data``, or None with its problems appended (key paths under ``loc``).

    ``common``: the base every such table shares (:class:`Step`, :class:`Expect`); an unknown
    key's message then lists the keys of this one (a ``tap``'s, a ``message``'s).
    """
    try:
        return model.model_validate(data, context=context)
    except ValidationError as exc:
        problems += [(_join(loc, where), msg) for where, msg in _problems(exc, model, common)]
        return None


def _problems(exc: ValidationError, model: type[BaseModel], common: type[BaseModel] | None) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        loc = tuple(part for part in err["loc"] if not _is_pydantic_tag(part))
        msg = _words(err)
        if err["type"] == "extra_forbidden" and model is schema.File and len(loc) == 1:
            msg = f"unknown table (known: {', '.join(schema.TABLES)})"
        elif err["type"] == "extra_forbidden":
            known = list(model.model_fields) if len(loc) == 1 else []
            near = difflib.get_close_matches(str(loc[-1]), known, n=1, cutoff=0.6)
            msg = "unknown key" + (f" (did you mean `{near[0]}`?)" if near else "")
            if common is not None and len(loc) == 1:
                required, optional = schema.fields_of(model, common)
                msg += "; this one takes: " + (", ".join((*required, *optional)) or "(none)")
        out.append((_path(loc), msg))
    return out


def _words(err: Any) -> str:
    """pydantic's message in the words a scenario's author knows."""
    if err["type"] == "missing":
        return "required"
    if err["type"] in ("model_type", "dict_type"):
        return f"must be a table, not {err['input']!r}"
    if err["type"] == "list_type":
        return f"must be an array of tables ([[...]]), not {err['input']!r}"
    msg = re.sub(r"^(Input|List|Dictionary|String) should ", "must ", err["msg"].removeprefix("Value error, "))
    if err["type"] in ("float_type", "int_type", "bool_type", "string_type"):
        msg += f", not {err['input']!r}"
    return msg


def _is_pydantic_tag(part: Any) -> bool:
    # Union members and validator names ("function-after[...]", "str", "dict[str,any]") in some paths.
    return isinstance(part, str) and ("[" in part or part in ("str", "int", "float", "bool", "none"))


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _join(base: str, loc: str) -> str:
    if not loc:
        return base
    return f"{base}{loc}" if loc.startswith("[") or not base else f"{base}.{loc}"


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
