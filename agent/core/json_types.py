"""How a JSON value's type is named in the errors a dispatcher or an admin reads."""

from __future__ import annotations

from typing import Any


def json_type(value: Any) -> str:
    """``"a number"``, ``"a string"``...: the JSON type of a value from ``json.loads``."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"
