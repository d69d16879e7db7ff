"""docs/security.md: every test a mitigation points to exists, so the threat model cannot rot."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "security.md"


def references() -> list[tuple[str, str | None]]:
    """``(file, test)`` for each `tests/x.py::test_y` or `::test_y` (same file as the one before)."""
    found, current = [], None
    for match in re.finditer(r"`(tests/[\w/]+\.py)?(?:::(test_\w+))?[^`]*`", DOC.read_text(encoding="utf-8")):
        path, name = match.group(1), match.group(2)
        if path:
            current = path
        if path or name:
            found.append((current, name))
    return found


def test_every_mitigation_points_to_a_test_that_exists():
    refs = references()
    assert len(refs) > 40
    for path, name in refs:
        assert path is not None, f"::{name} names no file before it"
        source = (ROOT / path).read_text(encoding="utf-8")
        if name is not None:
            assert f"def {name}(" in source, f"docs/security.md points to {path}::{name}, which does not exist"


def test_every_interface_of_the_issue_is_covered():
    text = DOC.read_text(encoding="utf-8")
    for heading in ("## Assets", "## Roles on the broker", "### MQTT", "### Touchscreen HTTP", "### Serial",
                    "### GPIO", "### SD card", "### Installer CLI"):
        assert heading in text, heading
