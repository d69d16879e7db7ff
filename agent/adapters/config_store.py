"""Persistence of the remote config layer in ``[storage] state_dir``.

The TOML file in ``/etc`` is read-only to the service, so accepted remote
pushes live in the state directory as the *overlay* (the accumulated partial
config, see ``agent.core.remote_config``) with its version:

- ``remote-config.json``: the layer in force;
- ``remote-config.prev.json``: the last *confirmed* layer before it, what a
  rollback restores.

Each file is one JSON object::

    {"format": 1, "version": 5, "highest_version": 5, "request_id": "r-5",
     "pending": false, "overlay": {...}, "sha256": "<hex>"}

``sha256`` covers the other members (JSON, sorted keys, compact), so a flipped
bit on the SD card is noticed even when the file still parses. ``pending`` is
true while a dangerous (MQTT) change waits for a broker to accept the unit: a
restart in that window re-arms the rollback guard instead of forgetting it.
The files hold the MQTT password when one was pushed: mode 0600.

Writes are atomic: a temporary file in the same directory, written, fsynced,
renamed over the target, then the directory fsynced, so after a power cut
either the old or the new file is there, whole. A new layer moves the current
file to ``.prev`` first, unless the current one is itself still pending (the
previous confirmed layer then stays the rollback target).

Loading never bricks the unit: a current file that cannot be parsed or
validated (against today's TOML) is set aside as ``*.bad`` and the previous
one is used; failing that the TOML file alone (version 0). Each fallback is
logged and returned as ``problems`` for ``config/current`` and the status
screen. ``highest_version`` survives a fallback when any file still says it,
so old signed pushes stay refused. A file the card cannot read (an I/O error)
is not damaged: it is left where it is, nothing is written over it, and
:attr:`ConfigStore.unreadable` says so: the highest version it may hold is
unknown, so the remote-request worker refuses pushes until a restart reads
it again.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from agent.adapters.reserve import set_aside
from agent.config import AgentConfig, ConfigError, Validate, load_config
from agent.core.remote_config import ConfigState

log = logging.getLogger(__name__)

FORMAT = 1
_CANNOT_READ = "cannot read"
CURRENT_NAME = "remote-config.json"
PREVIOUS_NAME = "remote-config.prev.json"


class ConfigStoreError(OSError):
    """The layer could not be written (disk full, read-only, permissions)."""


@dataclass(frozen=True)
class Effective:
    """What :func:`load_effective` found: the config to run with, and why."""

    config: AgentConfig
    version: int
    state: ConfigState
    store: "ConfigStore"
    source: str  # "current", "previous" or "toml"
    problems: tuple[str, ...] = ()  # fallbacks taken, for the log and config/current


def load_effective(
    base_toml_path: str | Path, validate: Validate, base: AgentConfig | None = None
) -> Effective:
    """The TOML file (or ``base``, already read from it) plus the stored remote layer, validated.

    Raises :class:`~agent.config.ConfigError` only when the TOML file itself
    is unusable; a bad stored layer is a logged fallback, never an error.
    """
    if base is None:
        base = load_config(base_toml_path, validate)
    store = ConfigStore(base.storage.state_dir, validate)
    state, source, problems = store.load(base)
    return Effective(state.config, state.version, state, store, source, tuple(problems))


class ConfigStore:
    def __init__(self, state_dir: str | Path, validate: Validate):
        self.dir = Path(state_dir)
        self.validate = validate
        self.current = self.dir / CURRENT_NAME
        self.previous = self.dir / PREVIOUS_NAME
        self.unreadable: str | None = None  # a layer the card could not read (see the module docstring)

    # ------------------------------------------------------------- loading

    def load(self, base: AgentConfig) -> tuple[ConfigState, str, list[str]]:
        """``(state, source, problems)``; ``source`` is "current", "previous" or "toml".

        After a fallback the broken files are set aside and the layer chosen
        is written as the current one, so the next save keeps a good ``.prev``.
        """
        problems: list[str] = []
        broken: list[Path] = []
        highest = 0
        for path, source in ((self.current, "current"), (self.previous, "previous")):
            layer, problem = self._read(path)
            if layer is None and problem is None:
                continue  # no such file (never pushed, or a save cut short)
            if problem is not None and problem.startswith(_CANNOT_READ):
                # Not damaged: left alone, and no repair writes over it.
                self.unreadable = f"{path.name}: {problem}"
                log.error("remote config %s; pushes are refused until it can be read", self.unreadable)
                problems.append(f"{path.name}: {problem}; falling back")
                continue
            if layer is not None:
                highest = max(highest, layer["highest_version"])
                try:
                    state = ConfigState.build(
                        base,
                        layer["overlay"],
                        layer["version"],
                        highest,
                        layer["request_id"],
                        # The previous layer was confirmed by definition.
                        layer["pending"] if source == "current" else False,
                        validate=self.validate,
                    )
                except ConfigError as exc:
                    shown = "; ".join(f"{loc or '<config>'}: {msg}" for loc, msg in exc.problems[:5])
                    problem = f"does not validate with the local file: {shown}"
                else:
                    if source != "current" and self.unreadable is None:
                        self._repair(state, broken, problems)
                    return state, source, problems
            message = f"{path.name}: {problem}; falling back"
            log.warning("remote config %s", message)
            problems.append(message)
            broken.append(path)
        state = ConfigState(base, {}, 0, highest, None, False, base)
        if broken and self.unreadable is None:
            self._repair(state, broken, problems)
        return state, "toml", problems

    def _read(self, path: Path) -> tuple[dict[str, Any] | None, str | None]:
        """``(layer, None)``, ``(None, problem)``, or ``(None, None)`` if absent."""
        try:
            raw = path.read_bytes()
        except FileNotFoundError:
            return None, None
        except OSError as exc:
            return None, f"{_CANNOT_READ}: {exc.strerror or exc}"
        try:
            data = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            return None, f"corrupt: {exc}"
        if not isinstance(data, dict):
            return None, "corrupt: not a JSON object"
        digest = data.pop("sha256", None)
        if digest != _digest(data):
            return None, "corrupt: checksum mismatch"
        if data.get("format") != FORMAT:
            return None, f"unknown format {data.get('format')!r}"
        ok = (
            _is_int(data.get("version"))
            and _is_int(data.get("highest_version"))
            and isinstance(data.get("overlay"), dict)
            and isinstance(data.get("pending"), bool)
            and (data.get("request_id") is None or isinstance(data.get("request_id"), str))
        )
        if not ok:
            return None, "corrupt: missing or mistyped members"
        return data, None

    def _repair(self, state: ConfigState, broken: list[Path], problems: list[str]) -> None:
        try:
            for path in broken:
                # Kept for a person to look at, never overwritten (.bad, .bad.1...).
                if set_aside(path) is None:
                    raise OSError(f"{path.name} cannot be set aside")
            self._write(self.current, state)
        except OSError as exc:
            message = f"cannot repair the stored layer: {exc.strerror or exc}"
            log.error("remote config %s", message)
            problems.append(message)

    # ------------------------------------------------------------- writing

    def save(self, state: ConfigState) -> None:
        """Persist a newly accepted layer; raises :class:`ConfigStoreError`."""
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            current, _ = self._read(self.current)
            if current is not None and not current["pending"]:
                os.replace(self.current, self.previous)
                _fsync_dir(self.dir)
            self._write(self.current, state)
        except OSError as exc:
            raise ConfigStoreError(exc.errno, f"cannot store the remote config: {exc.strerror or exc}") from exc

    def confirm(self, state: ConfigState) -> ConfigState:
        """A broker accepted the unit with the pending layer: no longer pending."""
        confirmed = state.confirmed()
        try:
            self._write(self.current, confirmed)
        except OSError as exc:
            raise ConfigStoreError(exc.errno, f"cannot store the remote config: {exc.strerror or exc}") from exc
        return confirmed

    def rollback(self, state: ConfigState) -> ConfigState:
        """Restore the previous confirmed layer (or none: the TOML alone).

        ``highest_version`` keeps the rolled-back version, so that push cannot
        be replayed; the admin sends a corrected one with a higher version.
        The in-memory result is returned even if writing it fails (logged):
        getting the unit back on a broker comes first.
        """
        layer, problem = self._read(self.previous)
        restored: ConfigState | None = None
        if layer is not None:
            try:
                restored = ConfigState.build(
                    state.base, layer["overlay"], layer["version"],
                    max(state.highest_version, layer["highest_version"]), layer["request_id"], False,
                    validate=self.validate,
                )
            except ConfigError as exc:
                problem = f"does not validate: {exc.problems[:3]}"
        if problem:
            log.warning("remote config rollback: %s: %s; using the local file alone", self.previous.name, problem)
        if restored is None:
            restored = ConfigState(state.base, {}, 0, state.highest_version, None, False, state.base)
        try:
            self._write(self.current, restored)
        except OSError as exc:
            log.error("remote config rollback not stored: %s", exc.strerror or exc)
        return restored

    def _write(self, path: Path, state: ConfigState) -> None:
        body: dict[str, Any] = {
            "format": FORMAT,
            "version": state.version,
            "highest_version": state.highest_version,
            "request_id": state.request_id,
            "pending": state.pending,
            "overlay": state.overlay,
        }
        body["sha256"] = _digest(body)
        write_atomic(path, json.dumps(body, ensure_ascii=False, indent=1).encode("utf-8") + b"\n")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace ``path`` with ``data`` so a crash leaves the old or the new file."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _fsync_dir(directory: Path) -> None:
    # The rename is durable only once the directory entry is on disk.
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _digest(body: dict[str, Any]) -> str:
    blob = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
