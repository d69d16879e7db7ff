"""Signed remote requests: canonical JSON and Ed25519 signatures.

When ``[security] admin_keys`` lists admin public keys, every remote config
push (``<prefix>/<unit>/config/set``) and remote command (``.../cmd``) must
carry ``"sig"``: a signature by one of those keys. This is defence in depth:
whoever controls the broker still cannot reconfigure a unit.

What is signed
--------------
The *signed object* is the request as received, without its ``"sig"`` member,
plus two members the sender does not transmit but the unit knows::

    {"unit": <this unit's id>, "purpose": "config/set" | "cmd", ...request}

``unit`` makes a request signed for unit A fail on unit B; ``purpose`` makes
a signed command useless as a config push and the reverse. The request's own
``version`` (config pushes) and ``expires`` are inside, so an old push cannot
be replayed to roll a unit back, nor a captured one used after it expired.

Canonical form (how to reproduce it in another language)
--------------------------------------------------------
The signed bytes are the JSON Canonicalization Scheme of RFC 8785 (JCS)
applied to the signed object, encoded as UTF-8. Any JCS library gives the
same bytes. In short:

- objects: members sorted by key, compared as UTF-16 code units (for the
  ASCII keys used here that is plain byte order); no whitespace anywhere;
  ``{"a":1,"b":[true,null]}``.
- strings: ``"`` and ``\\`` escaped as ``\\"`` and ``\\\\``; U+0008, U+0009,
  U+000A, U+000C, U+000D as ``\\b \\t \\n \\f \\r``; other characters below
  U+0020 as ``\\u00xx`` (lowercase hex); every other character as itself in
  UTF-8 (no ``\\u`` escapes for Arabic or accented text).
- numbers: as ECMAScript ``Number.prototype.toString`` writes the IEEE double
  (``1``, not ``1.0``; ``0.5``; ``1e+21``; ``1e-7``). Integers are exact up to
  2**53; larger ones are refused rather than silently rounded.
- ``true``, ``false``, ``null`` as such.

The signature is Ed25519 over those bytes, carried as standard base64 (with
padding) of the 64 signature bytes. Public keys in the config are standard
base64 of the 32 raw key bytes (``umps-agent admin keygen`` prints one).
The unit verifies with :mod:`agent.core.ed25519` (pure Python, no native
library); signing needs a private key and happens on the admin's machine.

The unit verifies the values it parsed, not the bytes it received: what it
validates is exactly what was signed. Duplicate keys are refused earlier (see
``agent.core.remote_config``) because parsers disagree on which one wins.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any, Literal

from agent.core import ed25519

if TYPE_CHECKING:  # signing happens on the admin's machine, with the cryptography package
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

Purpose = Literal["config/set", "cmd"]
PURPOSES: tuple[str, ...] = ("config/set", "cmd")
SIG_FIELD = "sig"
# Members the unit adds to the signed object; a request may not carry them.
ADDED_FIELDS = ("unit", "purpose")
MAX_EXACT_INT = 2**53


class CanonicalError(ValueError):
    """The value has no canonical form (NaN, huge integer, lone surrogate...)."""


class SignatureError(ValueError):
    """A request's signature is missing, malformed or not by a trusted key."""


# ------------------------------------------------------------ canonical JSON


def canonical_json(value: Any) -> bytes:
    """RFC 8785 (JCS) canonical JSON of ``value``, as UTF-8 bytes."""
    parts: list[str] = []
    _encode(value, parts)
    return "".join(parts).encode("utf-8")


def _encode(value: Any, out: list[str]) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, int):
        if abs(value) > MAX_EXACT_INT:
            raise CanonicalError(f"integer {value} is beyond ±2**53 and cannot be signed exactly")
        out.append(str(value))
    elif isinstance(value, float):
        out.append(es_number(value))
    elif isinstance(value, str):
        out.append(_es_string(value))
    elif isinstance(value, Mapping):
        for key in value:
            if not isinstance(key, str):
                raise CanonicalError(f"object key {key!r} is not a string")
        out.append("{")
        for i, key in enumerate(sorted(value, key=_utf16_order)):
            if i:
                out.append(",")
            out.append(_es_string(key))
            out.append(":")
            _encode(value[key], out)
        out.append("}")
    elif isinstance(value, (list, tuple)):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out)
        out.append("]")
    else:
        raise CanonicalError(f"{type(value).__name__} is not a JSON value")


def _utf16_order(key: str) -> bytes:
    # JCS sorts by UTF-16 code units; big-endian UTF-16 bytes compare the same.
    return key.encode("utf-16-be", errors="surrogatepass")


_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def _es_string(text: str) -> str:
    out = ['"']
    for ch in text:
        code = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif code < 0x20:
            out.append(f"\\u{code:04x}")
        elif 0xD800 <= code <= 0xDFFF:
            # Only a lone surrogate can show up here (json.loads of "\ud800").
            raise CanonicalError("string holds a lone UTF-16 surrogate")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def es_number(x: float) -> str:
    """``x`` as ECMAScript's Number::toString writes it (what JCS requires)."""
    if math.isnan(x) or math.isinf(x):
        raise CanonicalError("NaN and Infinity have no JSON form")
    if x == 0:
        return "0"  # also for -0.0
    sign = "-" if x < 0 else ""
    # repr() gives the shortest digits that round-trip, as ECMAScript does.
    _, digit_tuple, exponent = Decimal(repr(abs(x))).as_tuple()
    digits = "".join(map(str, digit_tuple))
    stripped = digits.rstrip("0")
    exponent += len(digits) - len(stripped)  # type: ignore[operator]
    digits = stripped
    k = len(digits)
    n = exponent + k  # type: ignore[operator]  # value = 0.digits * 10**n
    if k <= n <= 21:
        body = digits + "0" * (n - k)
    elif 0 < n <= 21:
        body = digits[:n] + "." + digits[n:]
    elif -6 < n <= 0:
        body = "0." + "0" * (-n) + digits
    else:
        e = n - 1
        mantissa = digits if k == 1 else digits[0] + "." + digits[1:]
        body = f"{mantissa}e{'+' if e >= 0 else '-'}{abs(e)}"
    return sign + body


# --------------------------------------------------------------------- keys


def parse_public_key(text: str) -> bytes:
    """A key from ``[security] admin_keys`` (base64 of the 32 raw bytes): the raw bytes."""
    try:
        raw = base64.b64decode(text.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ValueError(f"not base64: {exc}") from None
    if len(raw) != 32:
        raise ValueError(f"an Ed25519 public key is 32 bytes, this one is {len(raw)}")
    if not ed25519.is_public_key(raw):
        raise ValueError("not an Ed25519 public key (not a point of the curve)")
    return raw


def parse_public_keys(texts: Iterable[str]) -> tuple[bytes, ...]:
    """All keys; ``ValueError`` naming the first bad one by its index."""
    keys = []
    for index, text in enumerate(texts):
        try:
            keys.append(parse_public_key(text))
        except ValueError as exc:
            raise ValueError(f"admin_keys[{index}]: {exc}") from None
    return tuple(keys)


def public_key_text(raw: bytes) -> str:
    """The base64 text to list in ``[security] admin_keys`` for a raw public key."""
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
    private_key: Ed25519PrivateKey,
    unit_id: str,
    request: Mapping[str, Any],
    purpose: Purpose = "config/set",
) -> dict[str, Any]:
    """A copy of ``request`` with ``"sig"`` set, for admin tools and tests."""
    signature = private_key.sign(signed_bytes(unit_id, purpose, request))
    signed = {key: value for key, value in request.items() if key != SIG_FIELD}
    signed[SIG_FIELD] = base64.b64encode(signature).decode("ascii")
    return signed


def verify_request(
    keys: Sequence[bytes],
    unit_id: str,
    request: Mapping[str, Any],
    purpose: Purpose,
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
    if any(ed25519.verify(key, signature, message) for key in keys):
        return
    raise SignatureError("not signed by any admin key this unit trusts (or signed for another unit)")
