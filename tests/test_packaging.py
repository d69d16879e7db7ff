"""The package as pip builds it: no deprecation warnings for whoever installs it, the metadata right."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_license_is_a_file_that_every_setuptools_the_unit_may_build_with_reads():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())
    # A table (license = {text = ...}) makes setuptools >= 77 print a deprecation warning on every
    # install; an SPDX string (license = "...") needs setuptools >= 77, which Debian Bookworm (the
    # unit's offline install builds with its python3-setuptools 66) rejects as invalid. A LICENSE
    # file, picked up by both, is read the same way by every version.
    assert "license" not in project["project"]
    assert (ROOT / "LICENSE").read_text().startswith("BSD 2-Clause License")
    (setuptools,) = [r for r in project["build-system"]["requires"] if r.startswith("setuptools")]
    minimum = re.fullmatch(r"setuptools>=(\d+)(?:\.\d+)*", setuptools)
    assert minimum and int(minimum.group(1)) <= 66, setuptools  # python3-setuptools in Debian Bookworm


def test_pip_builds_the_package_without_a_deprecation_warning(tmp_path):
    # A copy of what the build reads, so the build writes nothing into the checkout.
    source = tmp_path / "src"
    source.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy(ROOT / name, source / name)
    for package in ("agent", "hil"):
        shutil.copytree(ROOT / package, source / package, ignore=shutil.ignore_patterns("__pycache__"))
    done = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-v", "-w", str(tmp_path / "dist"),
                           str(source)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    output = done.stdout + done.stderr
    assert "license` as a TOML table is deprecated" not in output and "SetuptoolsDeprecationWarning" not in output, (
        output[-3000:])
    (wheel,) = (tmp_path / "dist").glob("umps_agent-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        metadata = archive.read(next(n for n in archive.namelist() if n.endswith(".dist-info/METADATA"))).decode()
        assert any(n.endswith(".dist-info/LICENSE") or n.endswith("/licenses/LICENSE") for n in archive.namelist())
    assert "License-File: LICENSE" in metadata
