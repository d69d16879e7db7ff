"""Fleet admin tools: make signing keys and signed requests.

These run on an admin's workstation, not on the unit. They back the
``umps-agent admin ...`` commands (``register`` adds them to an argparse
sub-parser; ``main`` runs them alone: ``python -m agent.admin_tools``):

``keygen KEYFILE``
    Make an Ed25519 key pair. The private key is written to KEYFILE (PEM,
    PKCS#8, unencrypted, mode 0600; an existing file is never overwritten);
    the public key is printed: add it to ``[security] admin_keys``.
``pubkey KEYFILE``
    Print the public key of an existing private key.
``sign --key KEYFILE --unit U --version N [--id ID] [--expires-in S] FILE``
    Print a signed ``config/set`` request for unit U. FILE holds the partial
    config: TOML (``.toml``, same keys as the unit's file) or JSON (``.json``;
    JSON can also say ``null`` to drop a remote override).
``sign-cmd --key KEYFILE --unit U [--id ID] [--expires-in S] [--trace ID] COMMAND``
    Print a signed ``cmd`` request (``report_position``, ``flush_backlog``, ``crash_trace``
    with ``--trace``: the id in an alarm's ``crash.trace``).
``sign-dispatch --key KEYFILE --unit U [--expires-in S] TOPIC [FILE] [--alarm-id ID]``
    For dispatch software: print a signed ``call`` (FILE: the call as JSON),
    ``alarm/ack`` or ``alarm/clear`` (``--alarm-id``, required: the ``id`` of
    the unit's ``alarm`` message, the alarm it answers), for a unit with
    ``[security] dispatch_keys``. The same from Python: :func:`dispatch_request`.

Every signed request also carries ``issued``, the time it was signed (to the second,
rounded down): a unit that has no trusted clock yet takes it as proof of the time, and
refuses what expired before it (``docs/safety.md``). Sign on a machine whose clock is set.

The output is the JSON payload to publish, e.g. with
``mosquitto_pub -q 1 -t umps/U/config/set -f request.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import sys
import tomllib
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.core import alarm_id
from agent.core.remote_command import COMMANDS
from agent.core.signed_dispatch import DISPATCH_MAX_LIFETIME, DISPATCH_TOPICS

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

DEFAULT_CONFIG_LIFETIME_S = 7 * 24 * 3600  # a unit may be off for days; the version stops replays
DEFAULT_COMMAND_LIFETIME_S = 600
DEFAULT_DISPATCH_LIFETIME_S = 900  # a call or an alarm message is stale long before the 1 h limit


class AdminToolError(Exception):
    """A user error (bad file, existing key...): printed without a traceback."""


# -------------------------------------------------------------------- keys


def generate_key(private_path: str | Path) -> str:
    """Write a new private key to ``private_path``; return the public key text."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        raise AdminToolError(f"{private_path} exists; refusing to overwrite a key") from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    return public_text(key)


def public_text(private_key: Ed25519PrivateKey) -> str:
    """The ``[security] admin_keys`` entry of the key pair ``private_key`` belongs to."""
    from agent.core import signing

    return signing.public_key_text(private_key.public_key().public_bytes_raw())


def load_private_key(path: str | Path) -> Ed25519PrivateKey:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise AdminToolError(f"{path}: {exc.strerror or exc}") from None
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as exc:
        raise AdminToolError(f"{path}: not an unencrypted PEM private key: {exc}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise AdminToolError(f"{path}: not an Ed25519 key")
    return key


# ---------------------------------------------------------------- requests


def read_partial_config(path: str | Path) -> dict[str, Any]:
    """A partial config from a ``.toml`` or ``.json`` file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise AdminToolError(f"{path}: {exc.strerror or exc}") from None
    try:
        if path.suffix == ".toml":
            data = tomllib.loads(raw.decode("utf-8"))
        elif path.suffix == ".json":
            data = json.loads(raw.decode("utf-8"))
        else:
            raise AdminToolError(f"{path}: use a .toml or .json file")
    except (UnicodeDecodeError, ValueError) as exc:
        raise AdminToolError(f"{path}: {exc}") from None
    if not isinstance(data, dict):
        raise AdminToolError(f"{path}: the partial config must be a table/object")
    # TOML dates have no JSON form, and no config key takes one.
    try:
        json.dumps(data)
    except TypeError as exc:
        raise AdminToolError(f"{path}: {exc}") from None
    return data


def _expiry(now: dt.datetime, lifetime_s: float) -> str:
    when = now + dt.timedelta(seconds=lifetime_s)
    return when.astimezone(dt.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


def _issued(now: dt.datetime) -> str:
    """When a request is signed, to the second, rounded down: a unit without a trusted clock takes it
    as proof that it is at least that time (agent.core.time_floor)."""
    return _expiry(now, 0)


def config_request(
    private_key: Ed25519PrivateKey | None,
    unit_id: str,
    version: int,
    config: dict[str, Any],
    *,
    request_id: str | None = None,
    lifetime_s: float | None = DEFAULT_CONFIG_LIFETIME_S,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """A ``config/set`` request, signed when ``private_key`` is given."""
    now = now or dt.datetime.now(dt.timezone.utc)
    request: dict[str, Any] = {"id": request_id or f"cfg-{uuid.uuid4()}", "version": version, "config": config}
    if lifetime_s is not None:
        request["expires"] = _expiry(now, lifetime_s)
    if private_key is None:
        return request
    from agent.core import signing

    return signing.sign_request(private_key, unit_id, {**request, "issued": _issued(now)}, "config/set")


def command_request(
    private_key: Ed25519PrivateKey | None,
    unit_id: str,
    command: str,
    *,
    request_id: str | None = None,
    lifetime_s: float = DEFAULT_COMMAND_LIFETIME_S,
    now: dt.datetime | None = None,
    trace: str | None = None,
) -> dict[str, Any]:
    """A ``cmd`` request, signed when ``private_key`` is given (``trace``: crash_trace's trace id)."""
    if command not in COMMANDS:
        raise AdminToolError(f"unknown command {command!r}; known: {', '.join(COMMANDS)}")
    if (command == "crash_trace") != (trace is not None):
        raise AdminToolError("crash_trace takes --trace ID (an alarm's crash.trace), and only it does")
    now = now or dt.datetime.now(dt.timezone.utc)
    request = {"id": request_id or f"cmd-{uuid.uuid4()}", "command": command, "expires": _expiry(now, lifetime_s)}
    if trace is not None:
        request["trace"] = trace
    if private_key is None:
        return request
    from agent.core import signing

    return signing.sign_request(private_key, unit_id, {**request, "issued": _issued(now)}, "cmd")


def dispatch_request(
    private_key: Ed25519PrivateKey,
    unit_id: str,
    topic: str,
    message: dict[str, Any] | None = None,
    *,
    lifetime_s: float = DEFAULT_DISPATCH_LIFETIME_S,
    now: dt.datetime | None = None,
) -> dict[str, Any]:
    """``message`` (a ``call``, or ``{"id": "<alarm id>"}`` for ``alarm/ack`` and ``alarm/clear``)
    with ``expires``, ``issued`` and ``sig``, for a unit with ``[security] dispatch_keys``."""
    if topic not in DISPATCH_TOPICS:
        raise AdminToolError(f"unknown dispatch topic {topic!r}; known: {', '.join(DISPATCH_TOPICS)}")
    if not 0 < lifetime_s <= DISPATCH_MAX_LIFETIME.total_seconds():
        raise AdminToolError(f"a dispatch message may be valid for at most {DISPATCH_MAX_LIFETIME.total_seconds():g} s")
    now = now or dt.datetime.now(dt.timezone.utc)
    body = {k: v for k, v in (message or {}).items() if k not in ("sig", "expires", "issued")}
    body["expires"] = _expiry(now, lifetime_s)
    body["issued"] = _issued(now)
    from agent.core import signing

    return signing.sign_request(private_key, unit_id, body, topic)  # type: ignore[arg-type]


# --------------------------------------------------------------------- CLI


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add keygen / pubkey / sign / sign-cmd; each sets ``func(args) -> int``."""
    p = subparsers.add_parser("keygen", help="make an admin signing key pair")
    p.add_argument("keyfile", type=Path, help="where to write the private key (must not exist)")
    p.set_defaults(func=_cmd_keygen)

    p = subparsers.add_parser("pubkey", help="print the public key of a private key file")
    p.add_argument("keyfile", type=Path)
    p.set_defaults(func=_cmd_pubkey)

    p = subparsers.add_parser("sign", help="print a signed config/set request")
    p.add_argument("--key", type=Path, required=True, help="private key file")
    p.add_argument("--unit", required=True, help="the unit id the request is for")
    p.add_argument("--version", type=int, required=True, help="greater than the unit's current version")
    p.add_argument("--id", dest="request_id", help="request id (default: a random one)")
    p.add_argument("--expires-in", type=float, default=DEFAULT_CONFIG_LIFETIME_S, metavar="SECONDS")
    p.add_argument("file", type=Path, help="partial config, .toml or .json")
    p.set_defaults(func=_cmd_sign)

    p = subparsers.add_parser("sign-cmd", help="print a signed cmd request")
    p.add_argument("--key", type=Path, required=True)
    p.add_argument("--unit", required=True)
    p.add_argument("--id", dest="request_id")
    p.add_argument("--expires-in", type=float, default=DEFAULT_COMMAND_LIFETIME_S, metavar="SECONDS")
    # Not dest="command": `umps-agent` keeps its own sub-command there.
    p.add_argument("--trace", help="crash_trace: the trace's id (an alarm's crash.trace)")
    p.add_argument("unit_command", metavar="COMMAND", choices=COMMANDS, help=", ".join(COMMANDS))
    p.set_defaults(func=_cmd_sign_command)

    p = subparsers.add_parser("sign-dispatch", help="print a signed call, alarm/ack or alarm/clear")
    p.add_argument("--key", type=Path, required=True, help="dispatch private key file")
    p.add_argument("--unit", required=True)
    p.add_argument("--expires-in", type=float, default=DEFAULT_DISPATCH_LIFETIME_S, metavar="SECONDS",
                   help="at most 3600")
    p.add_argument("--alarm-id", metavar="ID",
                   help="alarm/ack, alarm/clear (required): the id of the unit's alarm message, a UUID")
    p.add_argument("topic", choices=DISPATCH_TOPICS)
    p.add_argument("file", type=Path, nargs="?", help="call: the call message as JSON ('-': stdin)")
    p.set_defaults(func=_cmd_sign_dispatch)


def _cmd_keygen(args: argparse.Namespace) -> int:
    public = generate_key(args.keyfile)
    print(f"# private key written to {args.keyfile}; add this to [security] admin_keys:", file=sys.stderr)
    print(public)
    return 0


def _cmd_pubkey(args: argparse.Namespace) -> int:
    print(public_text(load_private_key(args.keyfile)))
    return 0


def _cmd_sign(args: argparse.Namespace) -> int:
    request = config_request(
        load_private_key(args.key),
        args.unit,
        args.version,
        read_partial_config(args.file),
        request_id=args.request_id,
        lifetime_s=args.expires_in,
    )
    print(json.dumps(request, ensure_ascii=False))
    return 0


def _cmd_sign_command(args: argparse.Namespace) -> int:
    request = command_request(
        load_private_key(args.key), args.unit, args.unit_command,
        request_id=args.request_id, lifetime_s=args.expires_in, trace=args.trace,
    )
    print(json.dumps(request, ensure_ascii=False))
    return 0


def _cmd_sign_dispatch(args: argparse.Namespace) -> int:
    if args.topic == "call":
        if args.file is None:
            raise AdminToolError("a call needs its message: a JSON file, or - for stdin")
        raw = sys.stdin.buffer.read() if str(args.file) == "-" else _read_bytes(args.file)
        try:
            message = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise AdminToolError(f"{args.file}: {exc}") from None
        if not isinstance(message, dict):
            raise AdminToolError(f"{args.file}: a call is a JSON object")
    else:
        if args.file is not None:
            raise AdminToolError(f"{args.topic} takes no file; name the alarm with --alarm-id")
        if args.alarm_id is None:
            raise AdminToolError(f"{args.topic} needs --alarm-id: the id of the unit's alarm message (a signed "
                                 "answer must name its alarm, so that it can never touch a later one)")
        named = alarm_id.normalise(args.alarm_id)
        if named is None:
            raise AdminToolError(f"--alarm-id {args.alarm_id!r} is not an alarm id: the unit's alarm message gives "
                                 f"it, a UUID such as {alarm_id.EXAMPLE}")
        message = {"id": named}
    signed = dispatch_request(load_private_key(args.key), args.unit, args.topic, message, lifetime_s=args.expires_in)
    print(json.dumps(signed, ensure_ascii=False))
    return 0


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise AdminToolError(f"{path}: {exc.strerror or exc}") from None


def run(args: argparse.Namespace) -> int:
    """Run the parsed sub-command; user errors print one line and return 2."""
    from agent.core import signing

    try:
        return int(args.func(args))
    except AdminToolError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except signing.CanonicalError as exc:
        print(f"error: cannot sign: {exc}", file=sys.stderr)
        return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="umps-agent admin", description=__doc__.split("\n\n")[0])
    register(parser.add_subparsers(dest="admin_command", required=True))
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
