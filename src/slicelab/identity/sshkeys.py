"""SSH public keys: parse an OpenSSH ``authorized_keys`` line and judge it.

Accepted: ed25519, ecdsa (nistp256/384/521) and rsa of at least :data:`MIN_RSA_BITS` bits.
Refused with the reason: dsa, short rsa, unknown types, malformed base64, and a type prefix
that does not match the type inside the key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import struct
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from slicelab.domain.errors import InvalidKey

__all__ = ["ACCEPTED_TYPES", "MAX_KEY_LENGTH", "MIN_RSA_BITS", "ParsedKey", "parse_public_key"]

MIN_RSA_BITS = 2048
MAX_KEY_LENGTH = 16_384
ACCEPTED_TYPES = frozenset({"ssh-ed25519", "ssh-rsa", "ecdsa-sha2-nistp256",
                            "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521"})
_REFUSED = {"ssh-dss": "DSA keys are refused: DSA is weak and obsolete"}
_FIELD = "key"


@dataclass(frozen=True, slots=True)
class ParsedKey:
    type: str
    bits: int
    fingerprint: str
    comment: str
    public_key: str


def parse_public_key(text: str) -> ParsedKey:
    """Parse ``<type> <base64> [comment]``; raise :class:`InvalidKey` saying what is wrong."""
    kind, blob, comment = _split(text)
    _check_type(kind)
    raw = _decode(blob)
    inner = _inner_type(raw)
    if inner != kind:
        raise InvalidKey(f"key type prefix {kind!r} does not match the key inside ({inner!r})",
                         field=_FIELD)
    bits = _bits(f"{kind} {blob}")
    digest = base64.b64encode(hashlib.sha256(raw).digest()).decode().rstrip("=")
    return ParsedKey(kind, bits, f"SHA256:{digest}", comment, f"{kind} {blob}")


def _split(text: str) -> tuple[str, str, str]:
    if len(text) > MAX_KEY_LENGTH:
        raise InvalidKey(f"key is longer than {MAX_KEY_LENGTH} characters", field=_FIELD)
    parts = text.strip().split(None, 2)
    if len(parts) < 2:
        raise InvalidKey("an SSH public key is '<type> <base64> [comment]'", field=_FIELD)
    return parts[0], parts[1], parts[2] if len(parts) == 3 else ""


def _check_type(kind: str) -> None:
    if kind in _REFUSED:
        raise InvalidKey(_REFUSED[kind], field=_FIELD)
    if kind not in ACCEPTED_TYPES:
        known = ", ".join(sorted(ACCEPTED_TYPES))
        raise InvalidKey(f"unsupported key type {kind[:40]!r}; accepted: {known}", field=_FIELD)


def _decode(blob: str) -> bytes:
    try:
        return base64.b64decode(blob.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        raise InvalidKey("key data is not valid base64", field=_FIELD) from None


def _inner_type(raw: bytes) -> str:
    if len(raw) < 4:
        raise InvalidKey("key data is truncated", field=_FIELD)
    (length,) = struct.unpack(">I", raw[:4])
    if length > len(raw) - 4 or length > 64:
        raise InvalidKey("key data is truncated or corrupt", field=_FIELD)
    return raw[4:4 + length].decode("ascii", errors="replace")


def _bits(line: str) -> int:
    try:
        key = load_ssh_public_key(line.encode("ascii"))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidKey(f"key data is corrupt: {exc}", field=_FIELD) from None
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise InvalidKey(f"RSA key has {key.key_size} bits; at least {MIN_RSA_BITS} "
                             "required", field=_FIELD)
        return key.key_size
    if isinstance(key, ec.EllipticCurvePublicKey):
        return key.curve.key_size
    if isinstance(key, ed25519.Ed25519PublicKey):
        return 256
    raise InvalidKey("unsupported key algorithm", field=_FIELD)
