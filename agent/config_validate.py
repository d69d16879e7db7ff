"""Config validation with pydantic, over the schema in :mod:`agent.config`.

:func:`parse_config`: the agent at start and on its remote-request worker
(remote pushes), the CLI, the admin and rig tools, the tests.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import typing
from functools import cache
from typing import Any

from pydantic import TypeAdapter, ValidationError

from agent.config import PATTERN_WORDS, AgentConfig, ConfigError, error_location

# pydantic's error types for a stdlib dataclass, in the words the file's users know.
MESSAGES = {"unexpected_keyword_argument": "unknown key", "missing_argument": "Field required"}


@cache
def _adapter() -> TypeAdapter[AgentConfig]:
    return TypeAdapter(AgentConfig)


def parse_config(data: dict[str, Any], source: str = "<config>", *, strict: bool = False) -> AgentConfig:
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
        if err["type"] == "string_pattern_mismatch":
            pattern = (err.get("ctx") or {}).get("pattern", "")
            msg = f"{json.dumps(err.get('input'), ensure_ascii=False)} is not allowed here: " + PATTERN_WORDS.get(
                pattern, f"it must match the regular expression {pattern}")
        if err["type"] in ("int_type", "float_type", "bool_type") and isinstance(err.get("input"), str):
            msg += f' (got the string "{err["input"]}": write it without quotes)'
        if err["type"] == "unexpected_keyword_argument":
            near = difflib.get_close_matches(str(err["loc"][-1]), _known_keys(err["loc"][:-1]), n=1, cutoff=0.6)
            if near:
                msg += f" (did you mean `{near[0]}`?)"
        out.append((error_location(err["loc"]), msg))
    return out


def _known_keys(loc: tuple[Any, ...]) -> list[str]:
    """The keys of the config table at ``loc`` (``("gnss",)`` -> GnssConfig's fields); [] if not a table."""
    cls: Any = AgentConfig
    for part in loc:
        if not isinstance(part, str) or not dataclasses.is_dataclass(cls):
            return []
        hints = typing.get_type_hints(cls, include_extras=True)
        if part not in hints:
            return []
        cls = hints[part]
        while typing.get_origin(cls) is typing.Annotated:
            cls = typing.get_args(cls)[0]
    return [f.name for f in dataclasses.fields(cls)] if dataclasses.is_dataclass(cls) else []

