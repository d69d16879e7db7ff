"""docs/safety.md: every hazard meets every condition, every cell names a test, and every test named exists."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "safety.md"

CONDITIONS = (
    "No trusted time", "No GNSS", "Link down", "SD full or read-only", "State or outbox file corrupt",
    "Restart or power cut", "Clock jumps", "Bad config push",
)
HAZARDS = (
    "The alarm is not raised, or does not reach dispatch",
    "Dispatch cannot acknowledge or clear the alarm",
    "The alarm is cleared falsely (replay, forgery)",
    "A call is not shown, or is refused",
    "An old call is shown as new",
    "The unit is dark (no telemetry) after a restart",
    "Dispatch loses the unit's position",
    "The crew acts on a call it has not read",
    "Wrong direction or distance",
)
TEST_REF = re.compile(r"`(tests/[\w/]+\.py)?(?:::(test_\w+))?[^`]*`")


def references(text: str) -> list[tuple[str | None, str | None]]:
    """``(file, test)`` for each `tests/x.py::test_y` or `::test_y` (same file as the one before)."""
    found, current = [], None
    for match in TEST_REF.finditer(text):
        path, name = match.group(1), match.group(2)
        if path:
            current = path
        if path or name:
            found.append((current, name))
    return found


def hazard_sections(text: str) -> dict[str, str]:
    parts = re.split(r"^### H\d+\. ", text, flags=re.M)[1:]
    return {part.splitlines()[0].strip(): part for part in parts}


def table_rows(section: str) -> dict[str, list[str]]:
    """Condition -> its cells, for the hazard's table (rows of three cells)."""
    rows = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")] if line.startswith("|") else []
        if len(cells) == 3 and cells[0] in CONDITIONS:
            rows[cells[0]] = cells
    return rows


def test_every_test_the_analysis_names_exists():
    text = DOC.read_text(encoding="utf-8")
    refs = references(text)
    assert len(refs) > 100
    for path, name in refs:
        assert path is not None, f"::{name} names no file before it"
        assert (ROOT / path).is_file(), f"docs/safety.md points to {path}, which does not exist"
        if name is not None:
            source = (ROOT / path).read_text(encoding="utf-8")
            assert f"def {name}(" in source, f"docs/safety.md points to {path}::{name}, which does not exist"


def test_every_hazard_meets_every_condition_and_each_cell_names_its_test():
    sections = hazard_sections(DOC.read_text(encoding="utf-8"))
    assert list(sections) == list(HAZARDS)
    for hazard, section in sections.items():
        rows = table_rows(section)
        assert list(rows) == list(CONDITIONS), f"{hazard}: conditions {list(rows)}"
        for condition, (_, does, shown_by) in rows.items():
            assert does, f"{hazard} / {condition}: says nothing about what the unit does"
            named = [name for _, name in references(shown_by) if name]
            assert named, f"{hazard} / {condition}: names no test"


def test_the_conditions_are_defined_and_the_tensions_are_argued():
    text = DOC.read_text(encoding="utf-8")
    conditions = text.split("## Conditions", 1)[1].split("## Hazards", 1)[0]
    for condition in CONDITIONS:
        assert f"| {condition} |" in conditions, condition
    assert "## Where safety and security pull apart" in text


def test_a_missing_test_is_caught():
    # The checker itself: a reference to a test that is not there fails it.
    refs = references("`tests/test_emergency.py::test_no_such_thing`, `::test_a_bump_raises_nothing`")
    assert refs == [("tests/test_emergency.py", "test_no_such_thing"), ("tests/test_emergency.py", "test_a_bump_raises_nothing")]
    source = (ROOT / "tests/test_emergency.py").read_text(encoding="utf-8")
    assert "def test_no_such_thing(" not in source and "def test_a_bump_raises_nothing(" in source
