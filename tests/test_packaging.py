"""The package as pip builds it: no deprecation warning for whoever installs it, and a unit's
offline build with Debian's own setuptools still works."""

from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DEBIAN_PYTHON = Path("/usr/bin/python3")


def test_the_license_is_declared_where_every_setuptools_reads_it_silently():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    # A table ({text = ...}) warns on setuptools >= 77; a string fails on setuptools < 77 (Debian 12).
    assert "license" not in project and "license" in project["dynamic"]
    setup_cfg = configparser.ConfigParser()
    setup_cfg.read(ROOT / "setup.cfg")
    assert setup_cfg["metadata"]["license"] == "BSD-2-Clause"


def _source(tmp: Path) -> Path:
    """A copy of what the build reads, so the build writes nothing into the checkout."""
    source = tmp / "src"
    source.mkdir()
    for name in ("pyproject.toml", "setup.cfg", "README.md"):
        shutil.copy(ROOT / name, source / name)
    for package in ("agent", "hil"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    return source


def _build(python: str, source: Path, out: Path, *extra: str) -> tuple[str, str]:
    """Build the wheel; (everything pip and setuptools printed, the wheel's METADATA)."""
    done = subprocess.run([python, "-m", "pip", "wheel", "--no-deps", "-v", *extra, "-w", str(out), str(source)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, (done.stdout + done.stderr)[-3000:]
    (wheel,) = out.glob("umps_agent-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    return done.stdout + done.stderr, metadata


def test_pip_builds_the_package_without_a_deprecation_warning(tmp_path):
    output, metadata = _build(sys.executable, _source(tmp_path), tmp_path / "dist")  # the newest setuptools
    assert "deprecated" not in output.lower() and "DeprecationWarning" not in output, output[-3000:]
    assert "License: BSD-2-Clause" in metadata


def test_debian_setuptools_builds_it_offline_as_a_unit_does(tmp_path):
    if not DEBIAN_PYTHON.exists():
        pytest.skip("no Debian /usr/bin/python3")
    for probe in (["-m", "pip", "--version"], ["-c", "import setuptools"]):
        if subprocess.run([str(DEBIAN_PYTHON), *probe], capture_output=True).returncode:
            pytest.skip("Debian's python3-pip or python3-setuptools is missing")
    output, metadata = _build(str(DEBIAN_PYTHON), _source(tmp_path), tmp_path / "dist", "--no-build-isolation",
                              "--no-index")
    assert "License: BSD-2-Clause" in metadata
