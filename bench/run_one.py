"""Run one benchmark's ``collect()`` in this process and write its result as JSON.

``python -m bench.run_one NAME OUT.json [--quick] [--soak-hours H]``; ``python -m bench`` calls
this once per benchmark, each in its own process, so one benchmark's threads,
imports and memory never colour another's figures.
"""

from __future__ import annotations

import importlib
import json
import sys
import time
import traceback

from bench.common import Skip


def main(argv: list[str]) -> int:
    name, out = argv[0], argv[1]
    quick = "--quick" in argv[2:]
    extra = {"soak_hours": float(argv[argv.index("--soak-hours") + 1])} if "--soak-hours" in argv else {}
    t0 = time.monotonic()
    try:
        module = importlib.import_module(f"bench.bench_{name}")
        result = module.collect(quick=quick, **extra)
        result["status"] = "ok"
    except Skip as exc:
        result = {"status": "skipped", "reason": str(exc), "figures": []}
    except Exception as exc:  # noqa: BLE001 - reported in the doc, never hidden
        result = {"status": "failed", "reason": f"{type(exc).__name__}: {exc}",
                  "traceback": traceback.format_exc(), "figures": []}
    result["seconds"] = time.monotonic() - t0
    with open(out, "w") as f:
        json.dump(result, f, indent=1, allow_nan=True)
    return 0 if result["status"] != "failed" else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
