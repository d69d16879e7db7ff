"""Config validation with pydantic, over the schema in :mod:`agent.config`.

:func:`validate`, reached through :func:`agent.config.parse_config`: the agent
at start and on its remote-request worker, the CLI, the admin and rig tools.
"""

from __future__ import annotations

import json
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agent.config import AgentConfig, ConfigError, error_location

# pydantic's error types for a stdlib dataclass, in the words the file's users know.
MESSAGES = {"unexpected_keyword_argument": "unknown key", "missing_argument": "Field required"}


@cache
def _adapter() -> TypeAdapter[AgentConfig]:
    return TypeAdapter(AgentConfig)


def validate(data: dict[str, Any], source: str = "<config>", *, strict: bool = False) -> AgentConfig:
    """``data`` as an :class:`AgentConfig`; raises :class:`ConfigError` with every problem."""
    try:
        if strict:  # as JSON, whose types it checks: a path is a string, "5" is not a port
            return _adapter().validate_json(json.dumps(data, ensure_ascii=False), strict=True)
        return _adapter().validate_python(data)
    except ValidationError as exc:
        raise ConfigError(source, problems(exc)) from None


def problems(exc: ValidationError) -> list[tuple[str, str]]:
    out = []
    for err in exc.errors(include_url=False):
        msg = MESSAGES.get(err["type"], err["msg"]).removeprefix("Value error, ")
        out.append((error_location(err["loc"]), msg))
    return out
