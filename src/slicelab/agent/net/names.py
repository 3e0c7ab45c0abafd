"""Kernel object names: short, per-agent prefixed, derived from ids (never guessed)."""

from __future__ import annotations

import hashlib
import re

from slicelab.domain.errors import InvalidInput

__all__ = ["check_prefix", "ifname", "netns_name", "table_name"]

_PREFIX = re.compile(r"^[a-z][a-z0-9]{0,4}$")


def check_prefix(prefix: str) -> str:
    """An agent prefix is 1-5 lower-case letters or digits, starting with a letter."""
    if not _PREFIX.match(prefix):
        raise InvalidInput(f"agent prefix {prefix!r} must match {_PREFIX.pattern}",
                           field="prefix")
    return prefix


def ifname(prefix: str, role: str, key: str) -> str:
    """An interface name of at most 15 characters: prefix, one role letter, a hash of key."""
    digest = hashlib.sha256(key.encode()).hexdigest()
    return f"{prefix}{role}{digest[: 14 - len(prefix)]}"


def netns_name(prefix: str, sliver_id: str) -> str:
    return f"slicelab-{prefix}-{sliver_id}"


def table_name(prefix: str) -> str:
    return f"slicelab_{prefix}"
