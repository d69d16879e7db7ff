"""The runtime directory: a tmpfs (``/run/umps-agent``) for what must not wear the card.

The live status file (agent/status_report.py), the outbox's RAM spill and the last
fix's RAM copy go there. systemd's ``RuntimeDirectory`` sets ``$RUNTIME_DIRECTORY``;
without it (a test, the rig, a hand-started agent) ``[storage] runtime_dir`` says where.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.config import AgentConfig


def runtime_dir(config: AgentConfig) -> Path:
    """Where the live status file goes: systemd's ``RuntimeDirectory`` when set."""
    return Path(os.environ.get("RUNTIME_DIRECTORY") or config.storage.runtime_dir)
