"""The unit's Ed25519 verifier against RFC 8032's vectors and against OpenSSL (cryptography)."""

from __future__ import annotations

import random

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from agent.core import ed25519

# RFC 8032, section 7.1: TEST 1, 2 and 3 (public key, message, signature).
RFC8032 = [
    ("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a", "",
     "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"),
    ("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c", "72",
     "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"),
    ("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025", "af82",
     "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"),
]


def openssl_verifies(public: bytes, signature: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True


def flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[bit // 8] ^= 1 << (bit % 8)
    return bytes(out)


@pytest.mark.parametrize("public, message, signature", RFC8032)
def test_rfc8032_vectors(public: str, message: str, signature: str) -> None:
    pk, msg, sig = bytes.fromhex(public), bytes.fromhex(message), bytes.fromhex(signature)
    assert ed25519.verify(pk, sig, msg)
    assert not ed25519.verify(pk, sig, msg + b"\x00")
    assert not ed25519.verify(pk, flip(sig, 3), msg)  # in R
    assert not ed25519.verify(pk, flip(sig, 300), msg)  # in S


def test_agrees_with_openssl_on_signatures_and_their_corruptions() -> None:
    rng = random.Random(8032)
    for n in range(24):
        key = Ed25519PrivateKey.from_private_bytes(rng.randbytes(32))
        public = key.public_key().public_bytes_raw()
        message = rng.randbytes(rng.choice([0, 1, 31, 64, 200, 1500]))
        signature = key.sign(message)
        assert ed25519.verify(public, signature, message)
        bit = rng.randrange(512)
        cases = [
            (public, flip(signature, bit), message),
            (flip(public, rng.randrange(255)), signature, message),  # bit 255 is x's sign
            (public, signature, message + b"!" if n % 2 else message[:-1] if message else b"?"),
            (public, rng.randbytes(64), message),
        ]
        for case in cases:
            assert ed25519.verify(*case) == openssl_verifies(*case)
            assert not ed25519.verify(*case)


def test_an_s_not_below_the_group_order_is_refused() -> None:
    # S + L satisfies the same equation; accepting it would make signatures malleable.
    key = Ed25519PrivateKey.from_private_bytes(bytes(range(32)))
    public, message = key.public_key().public_bytes_raw(), b"config push"
    signature = key.sign(message)
    s = int.from_bytes(signature[32:], "little")
    malleated = signature[:32] + (s + ed25519.L).to_bytes(32, "little")
    assert ed25519.verify(public, signature, message)
    assert not ed25519.verify(public, malleated, message)
    assert not openssl_verifies(public, malleated, message)


def test_encodings_that_are_no_point() -> None:
    y_too_big = (ed25519.P + 1).to_bytes(32, "little")  # y must be below p
    negative_zero = ((1 << 255) | 1).to_bytes(32, "little")  # x = 0 with the sign bit set
    off_curve = next(e for e in (y.to_bytes(32, "little") for y in range(2, 100)) if ed25519.decode_point(e) is None)
    good = bytes.fromhex(RFC8032[0][0])
    assert ed25519.is_public_key(good)
    for encoded in (y_too_big, negative_zero, off_curve, good[:31], good + b"\x00"):
        assert not ed25519.is_public_key(encoded)
        assert not ed25519.verify(encoded, bytes.fromhex(RFC8032[0][2]), b"")


def test_a_signature_of_the_wrong_length_is_refused() -> None:
    public, _, signature = (bytes.fromhex(x) for x in RFC8032[0])
    assert not ed25519.verify(public, signature[:63], b"")
    assert not ed25519.verify(public, signature + b"\x00", b"")
