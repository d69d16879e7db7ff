"""What a rig run saw: messages, the rig's own actions, LED levels, the vehicle's truth.

Everything an expectation needs is in a :class:`RunLog`, with times in rig
seconds (``t = 0``: the agent's ``online`` birth message). The engine fills
one while the run goes; :func:`hil.expect.evaluate` judges it afterwards
without touching a socket, so an expectation can be re-run on a saved log
(``RunLog.to_json``/``from_json``; the engine writes ``runlog.json`` beside
the results).

Topics are kept relative to the unit (``status``, ``call/response``); a
message outside ``<prefix>/<unit>/`` keeps its full topic with a leading
``/``.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Msg:
    """One message seen on the broker (the rig's own included)."""

    t: float
    topic: str
    payload: bytes
    retain: bool = False
    qos: int = 1

    def json(self) -> Any:
        """The payload as JSON, or ``None`` when it is not JSON."""
        try:
            return json.loads(self.payload)
        except (ValueError, UnicodeDecodeError):
            return None


@dataclass(frozen=True, slots=True)
class ActionRecord:
    """A step the rig performed: when, and whether it could."""

    t: float
    step_id: str
    action: str
    detail: str = ""
    ok: bool = True


@dataclass(frozen=True, slots=True)
class PinSample:
    t: float
    level: int


@dataclass(frozen=True, slots=True)
class TruthSample:
    """Where the emulated vehicle was; ``fix`` is whether the receiver reported one."""

    t: float
    utc: dt.datetime
    lat: float
    lon: float
    fix: bool


@dataclass
class RunLog:
    messages: list[Msg] = field(default_factory=list)
    actions: list[ActionRecord] = field(default_factory=list)
    pins: dict[str, list[PinSample]] = field(default_factory=dict)  # output name -> levels
    truth: list[TruthSample] = field(default_factory=list)
    end_t: float = 0.0
    agent_exit: int | None = None  # None: still running when the run ended
    agent_output: str = ""  # the tail of the agent's stderr/stdout
    # The agent's output lines with the rig time each arrived: the report shows, under a failure,
    # what the agent said while it should have happened.
    agent_lines: list[tuple[float, str]] = field(default_factory=list)

    def action(self, step_id: str) -> ActionRecord | None:
        for a in self.actions:
            if a.step_id == step_id:
                return a
        return None

    def on(self, topic: str) -> list[Msg]:
        return [m for m in self.messages if m.topic == topic]

    # --------------------------------------------------------------- JSON

    def to_json(self) -> dict[str, Any]:
        return {
            "messages": [
                {"t": round(m.t, 6), "topic": m.topic, "retain": m.retain, "qos": m.qos, **_payload_json(m.payload)}
                for m in self.messages
            ],
            "actions": [asdict(a) for a in self.actions],
            "pins": {name: [[round(s.t, 6), s.level] for s in samples] for name, samples in self.pins.items()},
            "truth": [[round(p.t, 3), p.utc.isoformat(), p.lat, p.lon, p.fix] for p in self.truth],
            "end_t": self.end_t,
            "agent_exit": self.agent_exit,
            "agent_output": self.agent_output,
            "agent_lines": [[t, line] for t, line in self.agent_lines],
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunLog":
        messages = []
        for m in data.get("messages", []):
            payload = base64.b64decode(m["payload_b64"]) if "payload_b64" in m else m["payload"].encode("utf-8")
            messages.append(Msg(m["t"], m["topic"], payload, m.get("retain", False), m.get("qos", 1)))
        return cls(
            messages=messages,
            actions=[ActionRecord(**a) for a in data.get("actions", [])],
            pins={name: [PinSample(t, lv) for t, lv in samples] for name, samples in data.get("pins", {}).items()},
            truth=[TruthSample(t, dt.datetime.fromisoformat(u), lat, lon, fix) for t, u, lat, lon, fix in data.get("truth", [])],
            end_t=data.get("end_t", 0.0),
            agent_exit=data.get("agent_exit"),
            agent_output=data.get("agent_output", ""),
            agent_lines=[(float(t), str(line)) for t, line in data.get("agent_lines", [])],
        )


def _payload_json(payload: bytes) -> dict[str, str]:
    try:
        return {"payload": payload.decode("utf-8")}
    except UnicodeDecodeError:
        return {"payload_b64": base64.b64encode(payload).decode("ascii")}
