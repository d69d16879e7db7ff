"""The bench's peers: the smallest programs that do one of the agent's jobs, measured beside it.

Each figure of ``docs/performance.md`` that has a peer compares the agent
with a bare process doing the same job with the same libraries: a GNSS
receiver read with pyserial and pynmea2 and published with paho, buttons
read with gpiozero and published with paho, a link that only publishes. The
peers are modules of their own, run as separate processes (their CPU and
memory are their own, never the bench's), so they are linted, imported and
run by the test suite like any other code (``tests/test_bench_peers.py``).

Run one with :func:`command`: ``python -m bench.peers.<name> ARGS...``. A peer
that serves prints ``ready`` once it is, then works until its stdin closes
or it is terminated; a peer that measures prints one JSON line and exits.
"""

from __future__ import annotations

import sys

PEERS = ("button", "gnss", "import_ladder", "link_rss", "paho_rss")


def command(name: str, *args: str) -> list[str]:
    """The command line that runs peer ``name`` with ``args`` (the checkout on PYTHONPATH)."""
    if name not in PEERS:
        raise ValueError(f"no bench peer {name!r}; known: {', '.join(PEERS)}")
    return [sys.executable, "-m", f"bench.peers.{name}", *args]
