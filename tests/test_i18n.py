"""UI strings in French and Arabic (agent.core.i18n, agent/locales/*.json)."""

import json
import re
import string
import unicodedata
from pathlib import Path

import pytest

from agent.core import i18n
from agent.core.i18n import Catalog, load_strings, status_overrides, text_direction, translate

ROOT = Path(__file__).resolve().parents[1]
LOCALES = ROOT / "agent" / "locales"

# Strings that are meant to read the same in the Arabic UI (Latin technical labels).
LATIN_IN_ARABIC = {"gnss.label", "gnss.fix_2d", "gnss.fix_3d", "priority.short"}


def raw(lang):
    return json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"))


def placeholders(template):
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def test_both_languages_have_the_same_keys_and_placeholders():
    fr, ar = raw("fr"), raw("ar")
    assert sorted(fr) == sorted(ar), f"only in fr: {set(fr) - set(ar)}; only in ar: {set(ar) - set(fr)}"
    for key in fr:
        assert fr[key].strip() and ar[key].strip(), key
        assert placeholders(fr[key]) == placeholders(ar[key]), key


def test_no_duplicate_keys_in_the_files():
    for lang in ("fr", "ar"):
        seen = []
        json.loads((LOCALES / f"{lang}.json").read_text(encoding="utf-8"),
                   object_pairs_hook=lambda pairs: seen.extend(k for k, _ in pairs) or dict(pairs))
        duplicates = {k for k in seen if seen.count(k) > 1}
        assert not duplicates, f"{lang}.json repeats {duplicates}"


def test_arabic_strings_are_arabic():
    for key, text in raw("ar").items():
        if key in LATIN_IN_ARABIC:
            continue
        assert any(unicodedata.bidirectional(ch) == "AL" for ch in text), f"ar.json {key} = {text!r}"
        # Moroccan usage: Western digits only (see agent.core.geo).
        assert not re.search("[\u0660-\u0669\u06f0-\u06f9]", text), key


def test_status_names():
    assert [translate("fr", f"status.{s}") for s in ("available", "en_route", "on_scene", "busy", "out_of_service")] \
        == ["Disponible", "En route", "Sur place", "Occupé", "Hors service"]
    assert [translate("ar", f"status.{s}") for s in ("available", "en_route", "on_scene", "busy", "out_of_service")] \
        == ["متاح", "في الطريق", "في عين المكان", "مشغول", "خارج الخدمة"]


def test_formatting_and_errors():
    assert translate("fr", "link.backlog", count=12) == "12 en attente"
    assert translate("ar", "call.age_h", hours=1, minutes=5) == "منذ 1 س 05 د"
    with pytest.raises(KeyError, match="count"):
        translate("fr", "link.backlog")
    with pytest.raises(KeyError, match="no UI string"):
        translate("fr", "status.flying")


def test_missing_arabic_string_falls_back_to_french(monkeypatch):
    real = i18n.load_strings

    def without_busy(lang):
        strings = dict(real(lang))
        if lang == "ar":
            del strings["status.busy"]
        return strings

    monkeypatch.setattr(i18n, "load_strings", without_busy)
    assert translate("ar", "status.busy") == "Occupé"
    assert translate("ar", "status.available") == "متاح"


def test_unknown_language_reads_french_but_a_catalog_refuses_it():
    assert translate("de", "status.busy") == "Occupé"
    assert text_direction("de") == "ltr"
    with pytest.raises(ValueError, match="unknown language"):
        Catalog("de")


def test_text_direction():
    assert text_direction("ar") == "rtl" and text_direction("fr") == "ltr"
    assert Catalog("ar").direction == "rtl" and Catalog("fr").direction == "ltr"


def test_catalog_overrides():
    catalog = Catalog("fr", status_overrides({"busy": "Indisponible"}))
    assert catalog.status("busy") == "Indisponible"
    assert catalog.status("available") == "Disponible"
    assert catalog.status("teleporting") == "teleporting"  # unknown code: shown as is, not a crash
    assert Catalog("fr").status("busy") == "Occupé"  # overrides do not leak into other catalogs
    assert Catalog("ar", {"link.backlog": "{count} رسائل في الانتظار"})("link.backlog", count=3) == "3 رسائل في الانتظار"


@pytest.mark.parametrize("overrides, needle", [
    ({"status.flying": "En vol"}, "unknown UI string"),
    ({"status.busy": "  "}, "non-empty"),
    ({"link.backlog": "{total} en attente"}, "unknown placeholder"),
    ({"link.backlog": "{count en attente"}, "bad template"),
])
def test_bad_overrides_are_refused_when_the_catalog_is_built(overrides, needle):
    with pytest.raises(ValueError, match=needle):
        Catalog("fr", overrides)


def test_catalog_helpers():
    fr, ar = Catalog("fr"), Catalog("ar")
    assert fr.priority(1) == "Urgence absolue" and ar.priority(1) == "أولوية قصوى"
    assert fr.priority_short(2) == "P2"
    assert fr.compass("SW") == "SO" and ar.compass("SW") == "جنوب غرب"
    assert fr.has("action.accept") and not fr.has("action.fly")


def test_every_key_used_in_the_code_exists():
    """A typo in a key literal anywhere in agent/ would raise KeyError on a display."""
    prefixes = {key.split(".")[0] for key in raw("fr")}
    pattern = re.compile(r"""["']((?:%s)\.[a-z0-9_]+)["']""" % "|".join(sorted(prefixes)))
    used = set()
    for path in (ROOT / "agent").rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        # Only code that shows strings: config key paths ("ui.enabled") look alike.
        if "Catalog" in text or "translate(" in text:
            used.update(pattern.findall(text))
    assert used, "the scan found no keys at all"
    strings = load_strings("fr")
    missing = sorted(key for key in used if key not in strings)
    # f-string keys (status.{code}) are not literals; every literal must exist.
    assert missing == []


def test_loaded_strings_are_read_only():
    with pytest.raises(TypeError):
        load_strings("fr")["status.busy"] = "x"  # type: ignore[index]
