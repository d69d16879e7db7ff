"""Text from outside made safe once, where it enters the unit.

The rule (the same one ``docs/mqtt-api.md`` gives senders):

* A JSON payload holding a string that is not valid Unicode (a lone UTF-16
  surrogate such as ``"\\ud800"``: valid JSON, but no UTF-8 form) is refused as
  a whole, whatever the field: :func:`loads` raises :class:`BadText` naming
  where it is. Such text cannot be shown, stored or sent back, and the sender's
  encoder is broken, so guessing what it meant would be worse.
* Text shown to the crew (:func:`display_text`) keeps letters, digits,
  punctuation and marks of every script, and the left-to-right / right-to-left
  marks Arabic text uses (U+200E, U+200F, U+061C). It loses:

  - line breaks and tabs: each run becomes one space (``details`` keeps its
    line breaks, as ``\\n``);
  - other control characters (U+0000-U+001F, U+007F-U+009F): removed;
  - bidirectional embeddings, overrides and isolates (U+202A-U+202E,
    U+2066-U+2069): removed. They can reorder what a screen shows (an address
    read backwards); the screens set each field's direction themselves.
"""

from __future__ import annotations

import json
import re
from typing import Any

MAX_DEPTH = 64

BIDI_CONTROLS = "\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
_SURROGATE = re.compile("[\ud800-\udfff]")
_BREAKS = re.compile(r"[\t\n\r\v\f\x1c-\x1e\x85\u2028\u2029]+")
_BREAKS_KEEP_LINES = re.compile(r"\r\n|[\n\r\v\f\x1c-\x1e\x85\u2028\u2029]")
_DROPPED = re.compile(f"[\x00-\x08\x0e-\x1b\x1f\x7f-\x84\x86-\x9f{BIDI_CONTROLS}]")


class BadText(ValueError):
    """The payload holds text that is not valid Unicode; the message says where."""


class TooDeep(ValueError):
    """The JSON text nests more than :data:`MAX_DEPTH` arrays or objects: refused unread."""


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"')
_JSON_BRACKET = re.compile(r"[\[\]{}]")


def too_deep(text: str, limit: int = MAX_DEPTH) -> bool:
    """Whether the JSON ``text`` opens more than ``limit`` arrays or objects at once.

    Read before ``json.loads``, which recurses once per level: a hostile payload
    of thousands of ``[`` would otherwise run the stack out in the decoder (and in
    whatever finaliser the garbage collector happens to run down there).
    """
    depth = 0
    for bracket in _JSON_BRACKET.finditer(_JSON_STRING.sub("", text)):
        if bracket.group() in "[{":
            depth += 1
            if depth > limit:
                return True
        else:
            depth -= 1
    return False


def lone_surrogate_at(value: Any) -> str | None:
    """Where in a decoded JSON value a string holds a lone surrogate (``"nature"``,
    ``"config.ui.title"``, ``"items[2]"``, ``"(key)"``), or None."""
    stack: list[tuple[Any, str, int]] = [(value, "", 0)]
    while stack:
        item, path, depth = stack.pop()
        if isinstance(item, str):
            if _SURROGATE.search(item):
                return path or "(payload)"
        elif depth >= MAX_DEPTH:
            continue  # the decoders refuse anything this deep themselves
        elif isinstance(item, dict):
            for key, child in item.items():
                if _SURROGATE.search(key):
                    return f"{path}.(key)" if path else "(key)"
                stack.append((child, f"{path}.{key}" if path else key, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, f"{path}[{i}]", depth + 1) for i, child in enumerate(item))
    return None


def check(value: Any) -> None:
    """Raise :class:`BadText` if a string anywhere in ``value`` is not valid Unicode."""
    where = lone_surrogate_at(value)
    if where is not None:
        raise BadText(f"{where}: not valid Unicode text (a lone UTF-16 surrogate escape such as \\ud800)")


def loads(payload: bytes | str) -> Any:
    """``json.loads`` for inbound payloads: also raises :class:`BadText` and :class:`TooDeep` (ValueErrors)."""
    text = payload.decode("utf-8") if isinstance(payload, bytes) else payload
    if too_deep(text):
        raise TooDeep(f"nested deeper than {MAX_DEPTH} levels")
    data = json.loads(text)
    check(data)
    return data


def display_text(text: str, *, multiline: bool = False) -> str:
    """``text`` as the crew may be shown it (see the module's rule); never raises."""
    text = _SURROGATE.sub("\ufffd", text)  # only reachable if a caller skipped check()
    if multiline:
        text = _BREAKS_KEEP_LINES.sub("\n", text).replace("\t", " ")
    else:
        text = _BREAKS.sub(" ", text)
    return _DROPPED.sub("", text)
