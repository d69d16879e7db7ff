"""Config validation in a child process, so the running agent never loads pydantic.

The agent validates its config at start and for each remote push; pydantic
and the schema it builds would then stay in memory all day (about 9 MiB: the
agent measured 45 MiB with it, 36 without). Instead, :func:`validate_in_child` runs
``python -m agent.config_validate`` (the same validation as in process, see
there), sends it the data, and gets back the :class:`~agent.config.AgentConfig`
or the problems. A child takes about 0.12 s on the bench machine (a
Raspberry Pi is several times slower; not measured here): once at start, once
per push.

A child that cannot run or answer is a :class:`~agent.config.ConfigError` at
the key path ``""``: the push is refused with that reason, and a start fails
with it, as with any unusable config.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

from agent.config import AgentConfig, ConfigError

TIMEOUT_S = 60.0  # a loaded Pi Zero 2 takes a few seconds; a hung child must not hang the agent
# The directory that holds the ``agent`` package, for the child's import path.
PACKAGE_ROOT = str(Path(__file__).resolve().parents[2])


def validate_in_child(data: dict[str, Any], source: str = "<config>", *, strict: bool = False) -> AgentConfig:
    """Like :func:`agent.config.parse_config`, in a child process; raises :class:`ConfigError`."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (PACKAGE_ROOT, env.get("PYTHONPATH")) if p)
    request = pickle.dumps((data, source, strict), protocol=pickle.HIGHEST_PROTOCOL)
    try:
        done = subprocess.run(
            [sys.executable, "-m", "agent.config_validate"],
            input=request, capture_output=True, env=env, timeout=TIMEOUT_S, check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ConfigError(source, [("", f"the config validator could not run: {exc}")]) from None
    try:
        if done.returncode != 0:
            raise ValueError(f"exit status {done.returncode}")
        kind, value = pickle.loads(done.stdout)
    except Exception as exc:  # noqa: BLE001 - whatever the child left, it is not an answer
        detail = done.stderr.decode("utf-8", "replace").strip().splitlines()[-1:] or [str(exc)]
        raise ConfigError(source, [("", f"the config validator failed: {detail[0]}")]) from None
    if kind == "ok" and isinstance(value, AgentConfig):
        return value
    if kind == "invalid":
        raise ConfigError(source, [tuple(p) for p in value])
    raise ConfigError(source, [("", f"the config validator answered {kind!r}")])
