"""What a process's memory is made of: RSS after each import, added one after the other.

``python -m bench.peers.import_ladder STEPS_JSON``: ``STEPS_JSON`` is a list
of Python snippets (``"import serial, pynmea2"``); each is run in this fresh
interpreter in turn, and the resident set (KiB, ``/proc/self/status``) is
read before the first and after each. Prints the list as one JSON line.
"""

from __future__ import annotations

import gc
import json
import sys


def rss_kib() -> int:
    with open("/proc/self/status", encoding="ascii") as status:
        return int(next(line for line in status if line.startswith("VmRSS")).split()[1])


def main(argv: list[str]) -> int:
    out, namespace = [rss_kib()], {}  # what a step makes stays for the next ones
    for code in json.loads(argv[0]):
        exec(code, namespace)  # noqa: S102 - the bench's own import steps, measured as they are
        gc.collect()
        out.append(rss_kib())
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
