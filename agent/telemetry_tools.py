"""``umps-agent decode``: telemetry payloads and captures back to the JSON reports of the contract.

A dispatcher or an installer gets CBOR telemetry from a broker log, a
``mosquitto_sub`` capture or a server's dead-letter queue; this prints the
JSON report of each (one line each), exactly as a unit with ``encoding =
"json"`` would have sent it. It reads:

- one payload: a file holding the raw bytes of one PUBLISH (a JSON report, a
  CBOR report or a CBOR backlog batch), or with ``--hex`` its hexadecimal
  text;
- a capture: text lines ``TOPIC HEX``, as ``mosquitto_sub -t 'umps/+/telemetry/#'
  -F '%t %x'`` writes them; the unit comes from each line's topic.

A server decodes in process with :func:`agent.core.telemetry_cbor.decode_telemetry`.
Lines that are not telemetry are skipped and counted (on stderr); nothing
stops the run.
"""

from __future__ import annotations

import argparse
import binascii
import json
import sys
from pathlib import Path
from typing import BinaryIO, TextIO

from agent.core.telemetry_cbor import TelemetryDecodeError, decode_telemetry

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def register(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("path", help="a payload or a capture (TOPIC HEX lines); - for stdin")
    parser.add_argument("--hex", action="store_true", help="the payload is hexadecimal text")
    parser.add_argument("--topic", help="the topic it came from (gives the unit id)")
    parser.add_argument("--unit", help="the unit id, when there is no topic")


def run(args: argparse.Namespace) -> int:
    try:
        src: BinaryIO = sys.stdin.buffer if args.path == "-" else open(Path(args.path), "rb")
    except OSError as exc:
        print(f"umps-agent decode: {args.path}: {exc.strerror}", file=sys.stderr)
        return EXIT_USAGE
    with src:
        data = src.read()
    return decode(data, sys.stdout, sys.stderr, hex_text=args.hex, topic=args.topic, unit=args.unit)


def decode(data: bytes, out: TextIO, err: TextIO, *, hex_text: bool = False, topic: str | None = None,
           unit: str | None = None) -> int:
    """Print the reports in ``data``; 0 when at least one was decoded, else 1."""
    if hex_text:
        try:
            data = binascii.unhexlify("".join(data.decode("ascii").split()))
        except (ValueError, UnicodeDecodeError) as exc:
            print(f"umps-agent decode: not hexadecimal: {exc}", file=err)
            return EXIT_USAGE
    try:
        reports = decode_telemetry(data, topic, unit=unit)
    except TelemetryDecodeError as single_error:
        return _capture(data, out, err, unit, single_error)
    _print(reports, out)
    print(f"# 1 payload, {len(reports)} reports", file=err)
    return EXIT_OK


def _capture(data: bytes, out: TextIO, err: TextIO, unit: str | None, single_error: Exception) -> int:
    payloads = reports = skipped = 0
    for number, line in enumerate(data.splitlines(), 1):
        parts = line.split()
        if not parts or parts[0].startswith(b"#"):
            continue
        try:
            if len(parts) != 2:
                raise ValueError("expected TOPIC HEX")
            found = decode_telemetry(binascii.unhexlify(parts[1]), parts[0].decode("utf-8"), unit=unit)
        except (ValueError, UnicodeDecodeError) as exc:  # TelemetryDecodeError is a ValueError
            skipped += 1
            print(f"# line {number}: skipped: {exc}", file=err)
            continue
        payloads += 1
        reports += len(found)
        _print(found, out)
    if not payloads:
        print(f"umps-agent decode: not a telemetry payload ({single_error}) nor a capture", file=err)
        return EXIT_FAILED
    print(f"# {payloads} payloads, {reports} reports, {skipped} lines skipped", file=err)
    return EXIT_OK


def _print(reports: list[dict], out: TextIO) -> None:
    for report in reports:
        out.write(json.dumps(report, ensure_ascii=False, separators=(",", ":")) + "\n")
