"""UI strings in French and Arabic for the rider panel and the car touchscreen.

The strings live in ``agent/locales/<lang>.json``: one flat JSON object per
language, dotted keys (``status.en_route``, ``priority.1``, ``unit.km``...) to
``str.format`` templates. French is the reference language and the fallback: a
key missing from ``ar.json`` shows in French rather than as a blank (a test
keeps the two files in step so that does not happen in a release). A key
missing from French too is a programming error and raises ``KeyError``.

``Catalog(lang, overrides)`` is what the displays hold: the language's strings
plus the fleet's own wording from the config (e.g. ``[panel] labels``, which
names statuses the way a given unit says them). Overrides are checked once,
when the catalog is built: unknown keys and placeholders the template does not
have are refused with a clear error, so a typo in the config cannot put a
``KeyError`` on a rider's display later.

The files are package data read once through ``importlib.resources``: no
clock, thread or device here, so the module stays in the pure core.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping
from functools import lru_cache
from importlib import resources
from types import MappingProxyType
from typing import Literal

LANGUAGES = ("fr", "ar")
FALLBACK = "fr"
RTL_LANGUAGES = frozenset({"ar"})

Direction = Literal["ltr", "rtl"]


def text_direction(lang: str) -> Direction:
    """'rtl' for Arabic, 'ltr' otherwise (also for an unknown language)."""
    return "rtl" if lang in RTL_LANGUAGES else "ltr"


@lru_cache(maxsize=None)
def load_strings(lang: str) -> Mapping[str, str]:
    """The strings of one language, read once; raises ValueError if the file is malformed."""
    if lang not in LANGUAGES:
        raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
    resource = resources.files("agent").joinpath("locales", f"{lang}.json")
    try:
        data = json.loads(resource.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ValueError(f"locale file {lang}.json cannot be read: {exc}") from exc
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise ValueError(f"locale file {lang}.json must be a flat object of strings")
    for key, template in data.items():
        _placeholders(template, f"{lang}.json: {key}")  # fail at load, not on the display
    return MappingProxyType(data)


def _placeholders(template: str, where: str) -> frozenset[str]:
    try:
        return frozenset(name for _, name, _, _ in string.Formatter().parse(template) if name)
    except ValueError as exc:
        raise ValueError(f"{where}: bad template {template!r}: {exc}") from exc


def _format(template: str, key: str, fmt: Mapping[str, object]) -> str:
    if not fmt and "{" not in template:
        return template
    try:
        return template.format(**fmt)
    except KeyError as exc:
        raise KeyError(f"string {key!r} needs the value {exc.args[0]!r}") from None


def translate(lang: str, key: str, **fmt: object) -> str:
    """The string ``key`` in ``lang`` (French if that language lacks it), formatted with ``fmt``."""
    strings = load_strings(lang) if lang in LANGUAGES else load_strings(FALLBACK)
    template = strings.get(key)
    if template is None:
        template = load_strings(FALLBACK).get(key)
    if template is None:
        raise KeyError(f"no UI string {key!r}")
    return _format(template, key, fmt)


def status_overrides(labels: Mapping[str, str]) -> dict[str, str]:
    """Config status labels ``{"busy": "Indisponible"}`` as catalog overrides ``{"status.busy": ...}``."""
    return {f"status.{code}": label for code, label in labels.items()}


class Catalog:
    """The strings one display shows: a language plus the fleet's overrides."""

    __slots__ = ("lang", "direction", "_strings")

    def __init__(self, lang: str, overrides: Mapping[str, str] | None = None) -> None:
        if lang not in LANGUAGES:
            raise ValueError(f"unknown language {lang!r}; known: {', '.join(LANGUAGES)}")
        base = dict(load_strings(FALLBACK))
        base.update(load_strings(lang))
        for key, text in (overrides or {}).items():
            if key not in base:
                raise ValueError(f"override of unknown UI string {key!r}")
            if not isinstance(text, str) or not text.strip():
                raise ValueError(f"override of {key!r} must be a non-empty string")
            extra = _placeholders(text, f"override {key}") - _placeholders(base[key], key)
            if extra:
                raise ValueError(f"override of {key!r} uses unknown placeholder(s): {', '.join(sorted(extra))}")
            base[key] = text
        self.lang = lang
        self.direction: Direction = text_direction(lang)
        self._strings: Mapping[str, str] = MappingProxyType(base)

    def __call__(self, key: str, **fmt: object) -> str:
        template = self._strings.get(key)
        if template is None:
            raise KeyError(f"no UI string {key!r}")
        return _format(template, key, fmt)

    def has(self, key: str) -> bool:
        return key in self._strings

    def status(self, code: str) -> str:
        """A status label; an unknown status code shows as itself rather than failing."""
        key = f"status.{code}"
        return self(key) if key in self._strings else code

    def priority(self, n: int) -> str:
        return self(f"priority.{n}")

    def priority_short(self, n: int) -> str:
        return self("priority.short", n=n)

    def compass(self, code: str) -> str:
        return self(f"compass.{code}")

    def __repr__(self) -> str:
        return f"Catalog({self.lang!r})"
