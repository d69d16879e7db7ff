"""What a stop leaves in RAM when the card refuses it: the outbox's records that are not on the card.

A clean stop commits every unacknowledged record to the card. When the card
refuses (full, read-only), those records would die with the process: a
status change, a call's answer, the last reports. The outbox then writes them
here, to a file in the runtime directory (``[storage] runtime_dir``, a tmpfs:
RAM), which survives a restart of the agent (systemd's
``RuntimeDirectoryPreserve=restart``), not a power cut. The next run reads
them back as records waiting to be sent, and removes the file once they are
acknowledged or on the card.

One JSON object, written whole (a temporary file renamed over the old one):
``{"format": 1, "records": [[lane, topic, payload (base64), qos, retain, seq], ...]}``
in the order they were made.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from agent.core.publish import Lane

log = logging.getLogger(__name__)

SPILL_NAME = "outbox-spill.json"
FORMAT = 1


@dataclass(frozen=True, slots=True)
class Spilled:
    lane: Lane
    topic: str
    payload: bytes
    qos: int
    retain: bool
    seq: int | None


def write_spill(directory: Path, records: list[Spilled]) -> bool:
    """Leave ``records`` in ``directory``; False when it could not (logged)."""
    body = {"format": FORMAT, "records": [
        [int(r.lane), r.topic, base64.b64encode(r.payload).decode("ascii"), r.qos, r.retain, r.seq] for r in records]}
    path = directory / SPILL_NAME
    tmp = path.with_name(path.name + ".tmp")
    try:
        directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(body, handle, separators=(",", ":"))
        os.replace(tmp, path)
    except OSError as exc:
        log.error("outbox: the records the card refused could not be left in %s either: %s", directory, exc)
        return False
    return True


def read_spill(directory: Path) -> list[Spilled]:
    """The records a previous run left, oldest first (``[]`` when none, or unreadable: logged)."""
    path = directory / SPILL_NAME
    try:
        body = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(body, dict) or body.get("format") != FORMAT:
            raise ValueError("not a spill of format 1")
        return [Spilled(Lane(lane), str(topic), base64.b64decode(payload), int(qos), bool(retain),
                        seq if isinstance(seq, int) else None)
                for lane, topic, payload, qos, retain, seq in body["records"]]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, TypeError, KeyError) as exc:
        log.error("outbox: %s unreadable (%s); the records it held are lost", path, exc)
        return []


def remove_spill(directory: Path) -> None:
    try:
        (directory / SPILL_NAME).unlink(missing_ok=True)
    except OSError as exc:
        log.warning("outbox: %s not removed: %s", directory / SPILL_NAME, exc)
