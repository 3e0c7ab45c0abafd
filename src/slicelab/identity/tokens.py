"""API token secrets: random, shown once, stored only as a hash.

A secret looks like ``slt_<43 url-safe characters>`` (256 random bits). Because the secret is
random and long, a plain SHA-256 of it is a safe lookup key; no salt or slow hash is needed.
"""

from __future__ import annotations

import hashlib
import secrets

__all__ = ["TOKEN_PREFIX", "hash_token", "looks_like_token", "new_token"]

TOKEN_PREFIX = "slt_"
_SECRET_BYTES = 32


def new_token() -> str:
    """A fresh token secret, to be shown to its owner once."""
    return TOKEN_PREFIX + secrets.token_urlsafe(_SECRET_BYTES)


def hash_token(secret: str) -> str:
    """The stored form of ``secret``: hex SHA-256."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def looks_like_token(secret: str) -> bool:
    return secret.startswith(TOKEN_PREFIX) and 20 <= len(secret) <= 200
