"""Keep ``docs/asyncapi.json`` generated from the message models (:mod:`agent.core.messages`).

``python -m agent.contract_tools --write docs/asyncapi.json`` rewrites the
generated schemas in place (the rest of the document is kept as written);
``--check`` exits 1 when the document is stale.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from agent.core.messages import document_with_schemas, dumps_document


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("--write", "--check"):
        print("usage: python -m agent.contract_tools --write|--check docs/asyncapi.json", file=sys.stderr)
        return 2
    path = Path(argv[1])
    text = path.read_text(encoding="utf-8")
    fresh = dumps_document(document_with_schemas(json.loads(text)))
    if fresh == text:
        return 0
    if argv[0] == "--check":
        print(f"{path}: its schemas differ from agent.core.messages; run with --write", file=sys.stderr)
        return 1
    path.write_text(fresh, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
