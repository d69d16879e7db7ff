"""What pip takes on a Raspberry Pi for each dependency of the unit, recorded for the offline check.

A unit runs Raspberry Pi OS Bookworm: arm64, CPython 3.11, glibc 2.36, and no compiler.
``scripts/install.sh`` installs the agent with pip into a venv, so every package it pulls
in, the dependencies of ``pyproject.toml``, its ``pi`` extra, their own dependencies and
the build back-end that turns the checkout into a wheel, must come as a wheel for that
platform (``cp311``/``abi3`` ``manylinux_*_aarch64``, or pure Python ``py3-none-any``),
or from the OS. The installer runs pip with ``--only-binary=:all:``: a unit has no
compiler, and a source build that fails an hour into an install at the vehicle is worse
than pip's plain "no matching distribution" for the package at once.

``--refresh`` (``make refresh-wheels``) answers that from PyPI's JSON API
(``https://pypi.org/pypi/NAME/json``) and writes the answer to
``tests/data/arm64-wheels.json``: for each package the release pip would pick (the newest
one, not yanked and not a pre-release, that every requirement in the tree admits and whose
``requires_python`` admits 3.11), the file pip would take from it (the compatible wheel
with the most specific tag, else the source archive) with its SHA-256, and what that file
needs, read from the file's own metadata (downloaded and checked against the SHA-256; the
JSON's ``info`` describes only the latest release, and a mirror's copy can lag). Markers are evaluated for the Pi (``platform_machine == "aarch64"``), which
``pip download --platform`` does not do (it evaluates them for the machine it runs on).

The resolution is pip's first choice for each name, re-chosen when a requirement found
later excludes it; it does not backtrack. That is enough for a tree whose ranges are all
lower bounds; a conflict is reported rather than guessed around.

``tests/test_arm64_wheels.py`` reads the record in ``make test``, offline: it fails when
``pyproject.toml`` asks for something the record does not cover, or when a recorded file
would need a compiler on the Pi. The rules it applies are the functions below, shared
with the refresh so that both judge a file the same way.
"""

from __future__ import annotations

import argparse
import datetime as dt
import email.parser
import hashlib
import io
import json
import sys
import tarfile
import tomllib
import urllib.parse
import urllib.request
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.tags import Tag, compatible_tags, cpython_tags
from packaging.utils import canonicalize_name, parse_wheel_filename
from packaging.version import InvalidVersion, Version

ROOT = Path(__file__).resolve().parents[1]
RECORD = ROOT / "tests" / "data" / "arm64-wheels.json"
PYPROJECT = ROOT / "pyproject.toml"
REFRESH_COMMAND = "make refresh-wheels"
# The extras scripts/install.sh installs on a unit (its UMPS_EXTRAS default).
UNIT_EXTRAS = ("pi",)

PYTHON = (3, 11)
GLIBC_MINOR = 36  # Bookworm's glibc 2.36
ARCH = "aarch64"

# Packages the installer takes from the OS instead of PyPI, with the Debian package.
# Empty: every dependency has a wheel (lgpio too: docs/platform.md).
FROM_OS: dict[str, str] = {}


def platform_tags() -> list[str]:
    """The platform tags pip accepts on the Pi, most specific first."""
    tags = [f"manylinux_2_{minor}_{ARCH}" for minor in range(GLIBC_MINOR, 16, -1)]
    tags.insert(tags.index(f"manylinux_2_17_{ARCH}") + 1, f"manylinux2014_{ARCH}")
    return [*tags, f"linux_{ARCH}"]


def supported_tags() -> list[Tag]:
    """Every wheel tag pip on CPython 3.11 / aarch64 / glibc 2.36 accepts, in pip's order of preference."""
    platforms = platform_tags()
    return [
        *cpython_tags(PYTHON, abis=["cp311"], platforms=platforms),
        *compatible_tags(PYTHON, interpreter="cp311", platforms=platforms),
    ]


def target_environment(extra: str = "") -> dict[str, str]:
    """The marker environment of the Pi's Python."""
    env = default_environment()
    env.update(
        implementation_name="cpython", implementation_version="3.11.2", os_name="posix",
        platform_machine=ARCH, platform_python_implementation="CPython", platform_system="Linux",
        python_full_version="3.11.2", python_version="3.11", sys_platform="linux", extra=extra,
    )
    return env


def wheel_rank(filename: str) -> int | None:
    """The wheel's place in pip's preference on the Pi (lower is better), None if pip cannot use it."""
    _, _, _, tags = parse_wheel_filename(filename)
    order = {tag: i for i, tag in enumerate(supported_tags())}
    ranks = [order[tag] for tag in tags if tag in order]
    return min(ranks) if ranks else None


def judge(entry: dict) -> str | None:
    """Why this recorded package would need a compiler on the Pi, or None when it would not."""
    name, kind = entry["name"], entry["kind"]
    if kind == "os":
        return None if name in FROM_OS else f"{name}: recorded as taken from the OS, but the installer does not"
    if kind == "wheel":
        if wheel_rank(entry["file"]) is None:
            return f"{name} {entry['version']}: {entry['file']} is not a wheel CPython 3.11 on arm64 can install"
        return None
    if kind == "sdist":
        return (f"{name} {entry['version']}: PyPI has only a source archive ({entry['file']}) for the Pi; "
                "the installer takes wheels only (a unit has no compiler): require a release that has a "
                "wheel, or have the installer take the package from the OS (FROM_OS in scripts/arm64_wheels.py)")
    return f"{name}: unknown kind {kind!r}"


def pyproject_requirements(path: Path = PYPROJECT) -> dict[str, list[str]]:
    """What the unit asks pip for: the dependencies, each unit extra, the build back-end."""
    data = tomllib.loads(path.read_text())
    project = data["project"]
    groups = {"dependencies": project.get("dependencies", [])}
    for extra in UNIT_EXTRAS:
        groups[f"extra {extra}"] = project.get("optional-dependencies", {}).get(extra, [])
    groups["build-system"] = data.get("build-system", {}).get("requires", [])
    return {group: [str(Requirement(text)) for text in texts] for group, texts in groups.items()}


# ------------------------------------------------------------------ refresh (network)


def _get_json(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


class Resolver:
    """pip's first choice for each name on the Pi, from PyPI's JSON API."""

    def __init__(self) -> None:
        self.index: dict[str, dict] = {}  # name -> the project's JSON
        self.specs: dict[str, SpecifierSet] = {}
        self.required_by: dict[str, set[str]] = {}
        self.extras: dict[str, set[str]] = {}
        self.chosen: dict[str, Version] = {}
        self.requires: dict[str, list[str]] = {}
        self.picked: dict[tuple[str, Version], dict] = {}

    def project(self, name: str) -> dict:
        if name not in self.index:
            self.index[name] = _get_json(f"https://pypi.org/pypi/{name}/json")
        return self.index[name]

    def release_text(self, name: str) -> str:
        """The chosen release as PyPI spells it (``2.0`` is not ``2.0.0`` in its addresses)."""
        for text in self.project(name)["releases"]:
            try:
                if Version(text) == self.chosen[name]:
                    return text
            except InvalidVersion:
                continue
        raise KeyError(name)

    def release_files(self, name: str) -> list[dict]:
        files = self.project(name)["releases"][self.release_text(name)]
        return [f for f in files if not f.get("yanked")]

    def choose(self, name: str) -> Version:
        spec = self.specs[name]
        candidates = []
        for text, files in self.project(name)["releases"].items():
            try:
                version = Version(text)
            except InvalidVersion:
                continue
            live = [f for f in files if not f.get("yanked")]
            if not live or version.is_prerelease or version not in spec:
                continue
            requires_python = next((f.get("requires_python") for f in live if f.get("requires_python")), None)
            if requires_python and "3.11.2" not in SpecifierSet(requires_python):
                continue
            candidates.append(version)
        if not candidates:
            raise SystemExit(f"no release of {name} matches {spec or 'any version'} on Python 3.11")
        return max(candidates)

    def add(self, requirement: Requirement, parent: str, extra: str = "") -> bool:
        if requirement.marker and not requirement.marker.evaluate(target_environment(extra)):
            return False
        name = canonicalize_name(requirement.name)
        before = (str(self.specs.get(name, "")), frozenset(self.extras.get(name, ())))
        self.specs[name] = self.specs.get(name, SpecifierSet()) & requirement.specifier
        self.extras.setdefault(name, set()).update(requirement.extras)
        self.required_by.setdefault(name, set()).add(parent)
        return before != (str(self.specs[name]), frozenset(self.extras[name]))

    def resolve(self, top: dict[str, list[str]]) -> None:
        for group, texts in top.items():
            for text in texts:
                self.add(Requirement(text), "build-system" if group == "build-system" else "umps-agent")
        expanded: dict[str, tuple[Version, frozenset[str]]] = {}
        while True:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(self.project, [n for n in self.specs if n not in self.index]))
            todo = []
            for name in sorted(self.specs):
                self.chosen[name] = self.choose(name)
                if expanded.get(name) != (self.chosen[name], frozenset(self.extras[name])):
                    todo.append(name)
            if not todo:
                return
            for name in todo:
                expanded[name] = (self.chosen[name], frozenset(self.extras[name]))
                self.expand(name)

    def expand(self, name: str) -> None:
        """Add the requirements of the chosen release (with its requested extras) to the tree."""
        # From the file pip would take, not from the JSON's "info": that describes the
        # latest release only, and a mirror's copy of it can lag behind the files.
        requires_dist = self.metadata(name).get_all("Requires-Dist") or []
        wanted = ["", *sorted(self.extras[name])]
        self.requires[name] = []
        for text in requires_dist:
            requirement = Requirement(text)
            extra = next((e for e in wanted if not requirement.marker
                          or requirement.marker.evaluate(target_environment(e))), None)
            if extra is None:
                continue
            self.add(requirement, name, extra)
            requirement.marker = None
            self.requires[name].append(str(requirement))

    def pick_file(self, name: str) -> dict:
        """The file pip takes from the chosen release on the Pi, with what it is."""
        key = (name, self.chosen[name])
        if key in self.picked:
            return self.picked[key]
        files = self.release_files(name)
        wheels = [(wheel_rank(f["filename"]), f) for f in files if f["filename"].endswith(".whl")]
        wheels = [(rank, f) for rank, f in wheels if rank is not None]
        if wheels:
            chosen = min(wheels, key=lambda pair: pair[0])[1]
            entry = {"kind": "wheel", **_file_fields(chosen), "_url": self.url(name, chosen)}
        else:
            sdists = [f for f in files if f["packagetype"] == "sdist"]
            if not sdists:
                raise SystemExit(f"{name} {self.chosen[name]}: neither a usable wheel nor a source archive")
            entry = {"kind": "sdist", **_file_fields(sdists[0]), "_url": self.url(name, sdists[0])}
        self.picked[key] = entry
        return entry

    def url(self, name: str, f: dict) -> str:
        return urllib.parse.urljoin(f"https://pypi.org/pypi/{name}/json", f["url"])

    def metadata(self, name: str) -> email.message.Message:
        entry = self.pick_file(name)
        data = download(entry)
        if entry["kind"] == "wheel":
            with zipfile.ZipFile(io.BytesIO(data)) as wheel:
                member = next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))
                text = wheel.read(member).decode()
        elif entry["file"].endswith(".zip"):  # source archives: PKG-INFO (judged a failure anyway)
            with zipfile.ZipFile(io.BytesIO(data)) as archive:
                text = archive.read(next(n for n in archive.namelist() if n.count("/") == 1 and n.endswith("/PKG-INFO"))).decode()
        else:
            with tarfile.open(fileobj=io.BytesIO(data)) as archive:
                member = next(m for m in archive.getmembers() if m.name.count("/") == 1 and m.name.endswith("/PKG-INFO"))
                text = archive.extractfile(member).read().decode()
        return email.parser.Parser().parsestr(text)


def _file_fields(f: dict) -> dict:
    return {"file": f["filename"], "sha256": f["digests"]["sha256"], "uploaded": f.get("upload_time_iso_8601", "")[:10]}


def download(entry: dict) -> bytes:
    """The file's bytes, checked against the SHA-256 PyPI published for it."""
    with urllib.request.urlopen(entry["_url"], timeout=120) as response:
        data = response.read()
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise SystemExit(f"{entry['file']}: the download does not match PyPI's SHA-256")
    return data


def refresh() -> dict:
    top = pyproject_requirements()
    resolver = Resolver()
    resolver.resolve(top)
    packages = {}
    for name in sorted(resolver.chosen):
        if name in FROM_OS:
            entry = {"kind": "os", "os_package": FROM_OS[name]}
        else:
            entry = {k: v for k, v in resolver.pick_file(name).items() if not k.startswith("_")}
        packages[name] = {
            "name": name,
            "version": str(resolver.chosen[name]),
            "specifier": str(resolver.specs[name]),
            "required_by": sorted(resolver.required_by[name]),
            "requires": sorted(resolver.requires.get(name, [])),
            **entry,
        }
    return {
        "about": ("What pip takes on a Raspberry Pi (Raspberry Pi OS Bookworm, arm64, CPython 3.11, glibc 2.36) "
                  "for each package scripts/install.sh installs. Made by scripts/arm64_wheels.py --refresh "
                  f"({REFRESH_COMMAND}) from PyPI's JSON API; read offline by tests/test_arm64_wheels.py."),
        "refreshed": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "source": "https://pypi.org/pypi/NAME/json",
        "target": {"python": "3.11", "abi": "cp311", "platforms": f"manylinux_2_17..2_{GLIBC_MINOR}_{ARCH}, linux_{ARCH}",
                   "markers": {k: v for k, v in target_environment().items() if k in ("platform_machine", "python_version", "sys_platform")}},
        "requirements": top,
        "packages": packages,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--refresh", action="store_true", help=f"ask PyPI again and rewrite {RECORD.relative_to(ROOT)}")
    parser.add_argument("--check", action="store_true", help="judge the record (what the test does), offline")
    args = parser.parse_args(argv)
    if args.refresh:
        record = refresh()
        RECORD.write_text(json.dumps(record, indent=1, ensure_ascii=False) + "\n")
        print(f"wrote {RECORD.relative_to(ROOT)}: {len(record['packages'])} packages")
    record = json.loads(RECORD.read_text())
    problems = [p for p in (judge(e) for e in record["packages"].values()) if p]
    for entry in record["packages"].values():
        print(f"{entry['name']:24} {entry['version']:12} {entry['kind']:6} {entry.get('file', entry.get('os_package'))}"
              )
    for problem in problems:
        print("NEEDS A COMPILER:", problem, file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
