"""Ed25519 signature verification (RFC 8032), pure Python: public data only.

The unit only ever *verifies* (admin requests signed on the admin's machine),
so it needs no private-key code and no native crypto library: the
``cryptography`` package costs about 7 MiB of RAM on the unit, more than
everything else the signing feature does. Signing and key generation stay on
the admin side (``agent.admin_tools``, with ``cryptography``).

This follows the verification procedure of RFC 8032, section 5.1.7, and its
reference code (section 6): extended homogeneous coordinates, strict
decoding. Every input is public (key, message, signature), so the usual
constant-time concerns of signing code do not arise here.

Rules, as RFC 8032 states them:

* a public key or ``R`` that does not decode to a curve point (y not below p,
  x not recoverable, or x = 0 with the sign bit set) makes the signature
  invalid;
* ``S`` must be below the group order L (no malleated signatures);
* the check is ``[S]B == R + [k]A`` with ``k = SHA-512(R || A || M) mod L``,
  compared as points (the "cofactorless" equation, as OpenSSL and libsodium
  use).

A verification takes a few milliseconds on a PC, tens on a Raspberry Pi: fine
for config pushes and remote commands, which are rare.
"""

from __future__ import annotations

import hashlib

P = 2**255 - 19
L = 2**252 + 27742317777372353535851937790883648493  # order of the base point
D = -121665 * pow(121666, P - 2, P) % P
SQRT_M1 = pow(2, (P - 1) // 4, P)

Point = tuple[int, int, int, int]  # extended coordinates (X, Y, Z, T), x = X/Z, y = Y/Z, xy = T/Z


def _add(a: Point, b: Point) -> Point:
    # RFC 8032, 5.1.4: addition in extended coordinates (also valid for doubling).
    ax, ay, az, at = a
    bx, by, bz, bt = b
    e1 = (ay - ax) * (by - bx) % P
    e2 = (ay + ax) * (by + bx) % P
    c = 2 * at * bt * D % P
    d = 2 * az * bz % P
    e, f, g, h = e2 - e1, d - c, d + c, e2 + e1
    return (e * f % P, g * h % P, f * g % P, e * h % P)


def _mul(scalar: int, point: Point) -> Point:
    result: Point = (0, 1, 1, 0)  # the neutral element
    while scalar:
        if scalar & 1:
            result = _add(result, point)
        point = _add(point, point)
        scalar >>= 1
    return result


def _equal(a: Point, b: Point) -> bool:
    # x1/z1 == x2/z2 and y1/z1 == y2/z2, without inverting.
    return (a[0] * b[2] - b[0] * a[2]) % P == 0 and (a[1] * b[2] - b[1] * a[2]) % P == 0


def _recover_x(y: int, sign: int) -> int | None:
    if y >= P:
        return None
    x2 = (y * y - 1) * pow(D * y * y + 1, P - 2, P) % P
    if x2 == 0:
        return None if sign else 0
    x = pow(x2, (P + 3) // 8, P)
    if (x * x - x2) % P:
        x = x * SQRT_M1 % P
    if (x * x - x2) % P:
        return None
    if x & 1 != sign:
        x = P - x
    return x


def decode_point(encoded: bytes) -> Point | None:
    """The point a 32-byte encoding stands for, or None if it is not one."""
    if len(encoded) != 32:
        return None
    y = int.from_bytes(encoded, "little")
    sign = y >> 255
    y &= (1 << 255) - 1
    x = _recover_x(y, sign)
    if x is None:
        return None
    return (x, y, 1, x * y % P)


# The base point B (RFC 8032, 5.1): y = 4/5, x positive (even).
_BX = 15112221349535400772501151409588531511454012693041857206046113283949847762202
_BY = 46316835694926478169428394003475163141307993866256225615783033603165251855960
BASE: Point = (_BX, _BY, 1, _BX * _BY % P)


def is_public_key(encoded: bytes) -> bool:
    """True when ``encoded`` is 32 bytes that decode to a curve point."""
    return decode_point(encoded) is not None


def verify(public_key: bytes, signature: bytes, message: bytes) -> bool:
    """True when ``signature`` is a valid Ed25519 signature of ``message`` by ``public_key``."""
    if len(signature) != 64:
        return False
    a = decode_point(public_key)
    if a is None:
        return False
    r_bytes = signature[:32]
    r = decode_point(r_bytes)
    if r is None:
        return False
    s = int.from_bytes(signature[32:], "little")
    if s >= L:
        return False
    k = int.from_bytes(hashlib.sha512(r_bytes + public_key + message).digest(), "little") % L
    return _equal(_mul(s, BASE), _add(r, _mul(k, a)))
