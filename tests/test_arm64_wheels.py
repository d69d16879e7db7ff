"""Every package a unit installs comes as a wheel for the Pi (arm64, CPython 3.11): offline.

The answer was asked of PyPI by ``make refresh-wheels`` (``scripts/arm64_wheels.py``) and
committed as ``tests/data/arm64-wheels.json``; these tests read it and judge it with the
same rules. They fail when ``pyproject.toml`` asks for a dependency the record does not
cover (refresh it), when a recorded file is not one pip on the Pi can install (it would be
built from source there, and a unit has no compiler), and when the record is not a closed
tree (a package requires something it does not list).
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

REPO = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("arm64_wheels", REPO / "scripts" / "arm64_wheels.py")
wheels = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(wheels)

RECORD = json.loads(wheels.RECORD.read_text())
PACKAGES = RECORD["packages"]
REFRESH = f"run `{wheels.REFRESH_COMMAND}` (it asks PyPI and rewrites {wheels.RECORD.relative_to(REPO)})"


def coverage_problems(asked: dict[str, list[str]], recorded: dict[str, list[str]]) -> list[str]:
    """What ``pyproject.toml`` asks for that the record does not cover, and the reverse."""
    problems = []
    for group in sorted(set(asked) | set(recorded)):
        have = {canonicalize_name(Requirement(t).name): t for t in recorded.get(group, [])}
        want = {canonicalize_name(Requirement(t).name): t for t in asked.get(group, [])}
        for name in sorted(set(want) | set(have)):
            if name not in have:
                problems.append(f"pyproject.toml [{group}] asks for {want[name]!r}, which the record does not cover")
            elif name not in want:
                problems.append(f"the record covers {have[name]!r} in [{group}], which pyproject.toml no longer asks for")
            elif want[name] != have[name]:
                problems.append(f"pyproject.toml [{group}] asks for {want[name]!r}; the record was made for {have[name]!r}")
    return problems


def test_the_record_covers_exactly_what_pyproject_asks_for():
    problems = coverage_problems(wheels.pyproject_requirements(), RECORD["requirements"])
    assert not problems, "\n".join(problems) + f"\n{REFRESH}"


def test_a_new_or_changed_dependency_is_named_with_the_command_to_run():
    asked = {group: list(texts) for group, texts in RECORD["requirements"].items()}
    asked["dependencies"] = [*asked["dependencies"], "tuf>=5.0"]
    asked["extra pi"] = [t if not t.startswith("lgpio") else "lgpio>=0.3" for t in asked["extra pi"]]
    assert coverage_problems(asked, RECORD["requirements"]) == [
        "pyproject.toml [dependencies] asks for 'tuf>=5.0', which the record does not cover",
        "pyproject.toml [extra pi] asks for 'lgpio>=0.3'; the record was made for 'lgpio>=0.2'",
    ]


def test_no_package_needs_a_compiler_on_the_pi():
    problems = [p for p in (wheels.judge(entry) for entry in PACKAGES.values()) if p]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("name", sorted(PACKAGES))
def test_each_recorded_file_is_the_release_and_platform_it_claims(name):
    entry = PACKAGES[name]
    assert canonicalize_name(entry["name"]) == name
    if entry["kind"] == "os":
        return
    assert re.fullmatch(r"[0-9a-f]{64}", entry["sha256"]), entry["sha256"]
    if entry["kind"] == "wheel":
        wheel_name, version, _, _ = wheels.parse_wheel_filename(entry["file"])
        assert (wheel_name, version) == (name, Version(entry["version"]))
    assert Version(entry["version"]) in wheels.SpecifierSet(entry["specifier"]), entry


def test_the_record_is_a_closed_tree():
    """Each requirement, of the unit or of a recorded package, is met by a recorded release."""
    unmet = []
    requirers = [("umps-agent", t) for texts in RECORD["requirements"].values() for t in texts]
    requirers += [(entry["name"], t) for entry in PACKAGES.values() for t in entry["requires"]]
    for parent, text in requirers:
        requirement = Requirement(text)
        if requirement.marker and not requirement.marker.evaluate(wheels.target_environment()):
            continue
        entry = PACKAGES.get(canonicalize_name(requirement.name))
        if entry is None or Version(entry["version"]) not in requirement.specifier:
            unmet.append(f"{parent} requires {text}: recorded {entry and entry['version']}")
    assert not unmet, "\n".join(unmet) + f"\n{REFRESH}"


def test_the_installer_installs_the_extras_the_record_covers_and_only_wheels():
    script = (REPO / "scripts" / "install.sh").read_text()
    default = re.search(r'EXTRAS=\$\{UMPS_EXTRAS-([a-z,]*)\}', script)
    assert default, "install.sh's default UMPS_EXTRAS not found"
    assert tuple(filter(None, default.group(1).split(","))) == wheels.UNIT_EXTRAS
    assert "--only-binary=:all:" in script


@pytest.mark.parametrize(
    ("filename", "usable"),
    [
        ("pydantic_core-2.50.5-cp311-cp311-manylinux2014_aarch64.manylinux_2_17_aarch64.whl", True),
        ("cryptography-51.0.1-cp311-abi3-manylinux_2_34_aarch64.whl", True),
        ("pynacl-1.6.2-cp38-abi3-manylinux_2_34_aarch64.whl", True),
        ("pyserial-3.5-py2.py3-none-any.whl", True),
        ("lgpio-0.2.2.0-cp311-cp311-linux_aarch64.whl", True),
        ("pillow-13.0.0-cp311-cp311-manylinux_2_28_x86_64.whl", False),  # another machine
        ("pillow-13.0.0-cp311-cp311-musllinux_1_2_aarch64.whl", False),  # Alpine's C library
        ("cbor2-6.3.0-cp311-cp311-manylinux_2_38_aarch64.whl", False),  # newer glibc than Bookworm's 2.36
        ("cbor2-6.3.0-cp312-cp312-manylinux_2_28_aarch64.whl", False),  # another Python
        ("lgpio-0.2.2.0-cp311-cp311-linux_armv7l.whl", False),  # the 32-bit OS
    ],
)
def test_the_rules_accept_only_what_pip_on_the_pi_installs(filename, usable):
    entry = {"name": "x", "version": "1", "kind": "wheel", "file": filename}
    assert (wheels.judge(entry) is None) == usable


def test_a_source_archive_or_an_os_package_the_installer_does_not_take_fails():
    sdist = {"name": "rpi-gpio", "version": "0.7.1", "kind": "sdist", "file": "RPi.GPIO-0.7.1.tar.gz"}
    assert "only a source archive" in wheels.judge(sdist)
    assert "installer does not" in wheels.judge({"name": "nobody-ships-this", "version": "1", "kind": "os"})
