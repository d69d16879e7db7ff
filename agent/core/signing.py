"""Signed remote requests: the canonical form and Ed25519 signatures.

When ``[security] admin_keys`` lists admin public keys, every remote config
push (``<prefix>/<unit>/config/set``) and remote command (``.../cmd``) must
carry ``"sig"``: a signature by one of those keys. When ``[security]
dispatch_keys`` lists dispatch public keys, every ``call``, ``alarm/ack`` and
``alarm/clear`` must carry one by a dispatch key. This is defence in depth:
whoever controls the broker, or holds another role's credentials, still
cannot reconfigure a unit, send a crew to a false address or clear an
"officer in danger" alarm.

What is signed
--------------
The *signed object* is the request as received, without its ``"sig"`` member,
plus two members the sender does not transmit but the unit knows::

    {"unit": <this unit's id>, "purpose": <one of PURPOSES>, ...request}

``unit`` makes a request signed for unit A fail on unit B; ``purpose``
(``config/set``, ``cmd``, ``call``, ``alarm/ack``, ``alarm/clear``) makes a
signed message useless on any other topic. The request's own ``version``
(config pushes) and ``expires`` are inside, so an old push cannot be replayed
to roll a unit back, nor a captured one used after it expired; the ids of
accepted signed requests are kept until they expire (:mod:`agent.core.replay`).

Canonical form (how to reproduce it in another language)
--------------------------------------------------------
The signed bytes are the JSON Canonicalization Scheme of RFC 8785 (JCS)
applied to the signed object, encoded as UTF-8. The unit and the admin tools
use the maintained ``rfc8785`` package; any JCS library gives the same bytes.
In short: members sorted by key (UTF-16 code units), no whitespace, strings
with only ``"``, ``\\`` and control characters escaped (Arabic and accented
text as itself in UTF-8), numbers as ECMAScript writes the IEEE double
(``1``, not ``1.0``; ``1e+21``), integers exact within ±(2**53 - 1) and
refused beyond.

The signature is Ed25519 over those bytes, carried as standard base64 (with
padding) of the 64 signature bytes. Public keys in the config are standard
base64 of the 32 raw key bytes (``umps-agent admin keygen`` prints one).
Verification is libsodium's, through PyNaCl (``nacl.signing``): the running
agent loads it for 2.4 MiB, where ``cryptography`` with its own OpenSSL takes
8 MiB (``docs/performance.md``, memory). Signing needs a private key and
happens on the admin's or the dispatch centre's machine; the admin tools
(:mod:`agent.admin_tools`) keep their keys as PKCS #8 PEM files through
``cryptography``, which the running agent never imports. Both libraries
implement RFC 8032 Ed25519, so either one verifies the other's signatures.
The running agent verifies on its remote-request worker, never on the core
thread (:mod:`agent.adapters.remote_worker`).

The unit verifies the values it parsed, not the bytes it received: what it
validates is exactly what was signed. Duplicate keys are refused earlier (see
:mod:`agent.core.requests`) because parsers disagree on which one wins.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal, Protocol

import rfc8785
from nacl.exceptions import BadSignatureError
from nacl.signing import VerifyKey

from agent.config import public_key_bytes

Purpose = Literal["config/set", "cmd", "call", "alarm/ack", "alarm/clear"]
ADMIN_PURPOSES: tuple[str, ...] = ("config/set", "cmd")
DISPATCH_PURPOSES: tuple[str, ...] = ("call", "alarm/ack", "alarm/clear")
PURPOSES: tuple[str, ...] = ADMIN_PURPOSES + DISPATCH_PURPOSES
SIG_FIELD = "sig"
# Members the unit adds to the signed object; a request may not carry them.
ADDED_FIELDS = ("unit", "purpose")


class Signer(Protocol):
    """A private key that signs (``cryptography``'s ``Ed25519PrivateKey``): 64 signature bytes."""

    def sign(self, data: bytes) -> bytes: ...


class CanonicalError(ValueError):
    """The value has no canonical form (NaN, huge integer, lone surrogate...)."""


class SignatureError(ValueError):
    """A request's signature is missing, malformed or not by a trusted key."""


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON of ``value``, as UTF-8 bytes."""
    try:
        return rfc8785.dumps(value)
    except rfc8785.CanonicalizationError as exc:
        raise CanonicalError(str(exc) or type(exc).__name__) from None


# --------------------------------------------------------------------- keys


def parse_public_key(text: str) -> VerifyKey:
    """A key from ``[security] admin_keys`` / ``dispatch_keys`` (base64 of the 32 raw bytes).

    Any 32 bytes make a key; 32 bytes that are no curve point verify nothing.
    """
    return VerifyKey(public_key_bytes(text))


def parse_public_keys(texts: Iterable[str], name: str = "admin_keys") -> tuple[VerifyKey, ...]:
    """All keys; ``ValueError`` naming the first bad one by its index."""
    keys = []
    for index, text in enumerate(texts):
        try:
            keys.append(parse_public_key(text))
        except ValueError as exc:
            raise ValueError(f"{name}[{index}]: {exc}") from None
    return tuple(keys)


def public_key_text(key: VerifyKey | bytes) -> str:
    """The base64 text to list in ``[security] admin_keys`` for a public key."""
    raw = bytes(key)
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    return base64.b64encode(raw).decode("ascii")


# ------------------------------------------------------------------ signing


def signed_bytes(unit_id: str, purpose: Purpose, request: Mapping[str, Any]) -> bytes:
    """The exact bytes a signature over ``request`` for ``unit_id`` covers."""
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    clash = [name for name in ADDED_FIELDS if name in request]
    if clash:
        raise CanonicalError(f"a request may not carry {clash}: the unit adds them")
    signed = {key: value for key, value in request.items() if key != SIG_FIELD}
    signed["unit"] = unit_id
    signed["purpose"] = purpose
    return canonical_json(signed)


def sign_request(
    private_key: Signer,
    unit_id: str,
    request: Mapping[str, Any],
    purpose: Purpose = "config/set",
) -> dict[str, Any]:
    """A copy of ``request`` with ``"sig"`` set, for admin and dispatch tools and tests."""
    signature = private_key.sign(signed_bytes(unit_id, purpose, request))
    signed = {key: value for key, value in request.items() if key != SIG_FIELD}
    signed[SIG_FIELD] = base64.b64encode(signature).decode("ascii")
    return signed


def verify_request(
    keys: Sequence[VerifyKey],
    unit_id: str,
    request: Mapping[str, Any],
    purpose: Purpose,
    role: str = "admin",
) -> None:
    """Return if ``request["sig"]`` is a valid signature by one of ``keys``.

    Raises :class:`SignatureError` with a message fit for the requester.
    """
    sig = request.get(SIG_FIELD)
    if sig is None:
        raise SignatureError("required: this unit only accepts signed requests")
    if not isinstance(sig, str):
        raise SignatureError("must be a base64 string")
    try:
        signature = base64.b64decode(sig, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureError("not valid base64") from None
    if len(signature) != 64:
        raise SignatureError(f"an Ed25519 signature is 64 bytes, this one is {len(signature)}")
    try:
        message = signed_bytes(unit_id, purpose, request)
    except CanonicalError as exc:
        raise SignatureError(f"request has no canonical form: {exc}") from None
    for key in keys:
        try:
            key.verify(message, signature)
            return
        except BadSignatureError:
            continue
    raise SignatureError(f"not signed by any {role} key this unit trusts (or signed for another unit)")
