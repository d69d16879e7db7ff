"""The rig's NOTIFY_SOCKET (``hil.ready``) hears the agent's readiness as systemd would."""

from __future__ import annotations

import time

from agent.adapters.sdnotify import Notifier
from hil.ready import ReadyListener


def test_ready_is_heard_and_status_lines_are_not_readiness():
    listener = ReadyListener()
    try:
        assert listener.address.startswith("@umps-hil-")
        notifier = Notifier(env={"NOTIFY_SOCKET": listener.address})
        assert notifier.status("starting")
        assert listener.wait_ready(0.3) is None  # a STATUS= line alone says nothing about being up
        before = time.monotonic()
        assert notifier.ready("running")
        at = listener.wait_ready(10.0)
        assert at is not None and at >= before
        assert notifier.status("still running") and listener.wait_ready(0.0) == at  # the first READY counts
    finally:
        listener.close()
    # Closed: a late notification fails (logged by the agent), it never blocks it.
    assert not Notifier(env={"NOTIFY_SOCKET": listener.address}).ready()
