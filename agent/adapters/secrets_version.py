"""``secrets_version``: a counter that moves when a secret of the effective config changes.

The config hash leaves secrets out (:meth:`agent.config.AgentConfig.digest`), so
an admin cannot see in it that a pushed MQTT password took effect, nor that an
installer changed the one in the local file. ``config/current`` carries this
counter instead: it starts at 0 on a unit's first run and goes up by one each
time the set of secrets in force differs from the last one seen, whatever
changed it (a push, a rollback, an edit of the file before a restart).

To notice a change across restarts the unit keeps, in ``[storage] state_dir``
(``secrets-version.json``, mode 0600, written atomically), the counter and an
HMAC-SHA256 of the secrets under a random key made on the unit and stored
beside it. That fingerprint is never published: whoever can read this file can
read the pushed password in ``remote-config.json`` next to it anyway. A file
that cannot be parsed is set aside (``.bad``, kept) and the count starts from 0
again (logged); one the card cannot read (an I/O error) is left alone, and the
count runs from 0 in memory without being written over it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
from pathlib import Path
from typing import Any

from agent.adapters.config_store import write_atomic
from agent.adapters.reserve import set_aside
from agent.config import AgentConfig

log = logging.getLogger(__name__)

FILE_NAME = "secrets-version.json"


def peek(state_dir: str | Path) -> int | None:
    """The stored counter, for ``umps-agent config show``; None when there is none to read."""
    try:
        value = json.loads((Path(state_dir) / FILE_NAME).read_text(encoding="utf-8")).get("version")
    except (OSError, ValueError, AttributeError):
        return None
    return value if isinstance(value, int) and not isinstance(value, bool) else None


class SecretsVersion:
    def __init__(self, state_dir: str | Path):
        self.path = Path(state_dir) / FILE_NAME
        self._unreadable = False  # the card refused to read it: never written over
        self._data = self._read()

    @property
    def version(self) -> int:
        return int(self._data["version"]) if self._data else 0

    def update(self, config: AgentConfig) -> int:
        """The counter for ``config``'s secrets, moved (and stored) when they changed."""
        if self._data is None:
            data = {"version": 0, "key": os.urandom(32).hex()}
        else:
            data = dict(self._data)
        fingerprint = _fingerprint(bytes.fromhex(data["key"]), config)
        if self._data is not None and hmac.compare_digest(fingerprint, data["fingerprint"]):
            return self.version
        if self._data is not None:
            data["version"] = int(data["version"]) + 1
            log.info("secrets of the effective config changed: secrets_version %d", data["version"])
        data["fingerprint"] = fingerprint
        try:
            if not self._unreadable:
                write_atomic(self.path, json.dumps(data).encode("utf-8"))
        except OSError as exc:
            log.error("secrets_version not stored: %s", exc)
        self._data = data
        return self.version

    def _read(self) -> dict[str, Any] | None:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            if (isinstance(data, dict) and isinstance(data.get("version"), int) and data["version"] >= 0
                    and isinstance(data.get("fingerprint"), str) and len(bytes.fromhex(data["key"])) == 32):
                return data
            raise ValueError("not the expected members")
        except FileNotFoundError:
            return None
        except OSError as exc:
            self._unreadable = True
            log.error("%s cannot be read (%s): secrets_version counts from 0 in memory", self.path, exc)
            return None
        except (ValueError, TypeError, KeyError) as exc:
            bad = set_aside(self.path)
            log.error("%s unreadable (%s): set aside as %s; counting secrets_version from 0 again", self.path, exc,
                      bad.name if bad else "(could not be moved)")
            return None


def _fingerprint(key: bytes, config: AgentConfig) -> str:
    body = json.dumps(sorted(config.secrets().items()), ensure_ascii=False).encode("utf-8")
    return hmac.new(key, body, hashlib.sha256).hexdigest()
