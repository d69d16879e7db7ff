"""Which config keys a remote push may change, and how a change takes effect.

One table, :data:`KEY_RULES`, looked up by the longest matching key-path
prefix: ``hot`` (the core reads the new value at its next use), ``reinit``
(the runtime rebuilds one adapter in-process: GNSS reader, GPIO devices, panel
display, MQTT link) or ``restart`` (applies at the next start;
``restart_required`` is reported). MQTT changes are *dangerous*: the runtime
arms a :class:`~agent.core.rollback_guard.RollbackGuard` and rolls back if no
broker accepts the unit in time. Never remotely: ``unit.id`` (it is the unit's
identity on the broker), ``storage.state_dir`` (where the remote layer and the
replay memory are kept), ``storage.require_encrypted`` (only the installer may
lower that guard) and ``ui.host`` (it would open the crew's touchscreen page to
the network). ``security.admin_keys`` and ``security.dispatch_keys`` only
through a validly signed request, and ``admin_keys`` never to an empty list
(that would turn signing off; only the local file may).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

from agent.config import AgentConfig

@dataclass(frozen=True, slots=True)
class KeyRule:
    """How a key may be changed remotely and how the change takes effect."""

    effect: Literal["hot", "reinit", "restart"]
    part: str | None = None  # the adapter rebuilt for "reinit"
    dangerous: bool = False  # could cut the unit off: rollback guard
    remote: Literal["yes", "signed", "never"] = "yes"


_HOT = KeyRule("hot")
_RESTART = KeyRule("restart")

KEY_RULES: dict[str, KeyRule] = {
    "unit.id": KeyRule("restart", remote="never"),
    "unit.kind": _RESTART,  # decides which adapters exist (touchscreen or OLED)
    "unit.name": _HOT,
    "gnss": KeyRule("reinit", "gnss"),
    "mqtt": KeyRule("reinit", "mqtt", dangerous=True),
    "storage.state_dir": KeyRule("restart", remote="never"),
    "storage.require_encrypted": KeyRule("restart", remote="never"),
    "storage": _HOT,  # outbox limits: the outbox takes them at run time
    "telemetry": _HOT,
    # The pin factory owns the GPIO chip for the whole process.
    "gpio.factory": _RESTART,
    "gpio.pigpio_host": _RESTART,
    "gpio.pigpio_port": _RESTART,
    "gpio": KeyRule("reinit", "gpio"),
    # A shell command: only the unit's own file may set it.
    "power.poweroff_command": KeyRule("restart", remote="never"),
    "power.shutdown_after_s": _HOT,
    "power.parked_rate_hz": _HOT,
    "power": _RESTART,  # pins and levels: the inputs are built at start
    "panel": _HOT,
    "ui.host": KeyRule("restart", remote="never"),
    "ui.enabled": _RESTART,
    "ui.http_port": _RESTART,
    "ui": _HOT,
    "display.speech": _HOT,
    "display": KeyRule("reinit", "display"),
    "security.admin_keys": KeyRule("hot", remote="signed"),
    "security.dispatch_keys": KeyRule("hot", remote="signed"),
    "security": _HOT,
    "logging": _HOT,
    # The sensor's adapter is built at start; the detector reads its thresholds at each sample.
    "imu.enabled": _RESTART,
    "imu.device": _RESTART,
    "imu.sysfs_dir": _RESTART,
    "imu.dev_dir": _RESTART,
    "imu.rate_hz": _RESTART,
    "imu.wake_hz": _RESTART,
    "imu": _HOT,
}
# A key the table does not know yet: the safe assumption.
DEFAULT_RULE = _RESTART


def rule_for(path: str) -> KeyRule:
    """The rule of the longest prefix of ``path`` (``"gpio.inputs.ack.pin"``)."""
    parts = path.split(".")
    for end in range(len(parts), 0, -1):
        rule = KEY_RULES.get(".".join(parts[:end]))
        if rule is not None:
            return rule
    return DEFAULT_RULE


def restricted(path: str) -> Iterator[tuple[str, KeyRule]]:
    """Restricted keys that a push at ``path`` would touch."""
    for key, rule in KEY_RULES.items():
        if rule.remote == "yes":
            continue
        if path == key or key.startswith(path + ".") or path.startswith(key + "."):
            yield key, rule



@dataclass(frozen=True, slots=True)
class ConfigChange:
    """What an accepted push changed, and what the runtime must do about it."""

    paths: tuple[str, ...] = ()  # changed key paths, sorted
    sections: frozenset[str] = frozenset()  # top-level tables touched
    reinit: frozenset[str] = frozenset()  # adapters to rebuild: gnss, gpio, display, mqtt
    restart_required: bool = False
    dangerous: bool = False  # arm the RollbackGuard

    @classmethod
    def between(cls, old: AgentConfig, new: AgentConfig) -> "ConfigChange":
        paths = tuple(sorted(_diff(old.plain(), new.plain(), "")))
        rules = [rule_for(path) for path in paths]
        return cls(
            paths=paths,
            sections=frozenset(path.split(".")[0] for path in paths),
            reinit=frozenset(r.part for r in rules if r.effect == "reinit" and r.part),
            restart_required=any(r.effect == "restart" for r in rules),
            dangerous=any(r.dangerous for r in rules),
        )


def _diff(old: Any, new: Any, prefix: str) -> Iterator[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in set(old) | set(new):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in old or key not in new:
                yield path
            else:
                yield from _diff(old[key], new[key], path)
    elif old != new:
        yield prefix


