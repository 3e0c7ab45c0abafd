"""GENI URNs: ``urn:publicid:IDN+<authority>+<type>+<name>``.

The authority is a DNS-like name, optionally followed by ``:``-separated sub-authorities
(``emulab.net:myproject``). The type is a lowercase word (``user``, ``slice``, ``node``,
``sliver``, ``authority``, ``project``, ``link``, ``interface``, ``image``). The name may not
contain ``+`` or white space; its further rules depend on the type (see :mod:`.names`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache

from .errors import InvalidURN

__all__ = ["URN", "URN_PREFIX", "URN_TYPES", "urn_text"]

URN_PREFIX = "urn:publicid:IDN+"
URN_TYPES = frozenset(
    {"authority", "user", "slice", "sliver", "node", "project", "link", "interface", "image",
     "site", "member", "lease", "file"}
)

_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-_]*[A-Za-z0-9])?"
_AUTHORITY = re.compile(rf"^{_LABEL}(?:\.{_LABEL})*(?::{_LABEL}(?:\.{_LABEL})*)*$")
_TYPE = re.compile(r"^[a-z][a-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9._\-:%~/@]+$")
MAX_URN_LENGTH = 512


@dataclass(frozen=True, slots=True)
class URN:
    """A parsed, valid GENI URN. Build with :meth:`parse` or the constructor (both validate)."""

    authority: str
    type: str
    name: str

    def __post_init__(self) -> None:
        _check_part("authority", self.authority, _AUTHORITY)
        _check_part("type", self.type, _TYPE)
        if self.type not in URN_TYPES:
            known = ", ".join(sorted(URN_TYPES))
            raise InvalidURN(f"unknown URN type {self.type!r}; known: {known}")
        _check_part("name", self.name, _NAME)
        if len(str(self)) > MAX_URN_LENGTH:
            raise InvalidURN(f"URN longer than {MAX_URN_LENGTH} characters")

    @classmethod
    def parse(cls, text: str) -> URN:
        """Parse ``urn:publicid:IDN+authority+type+name``; raise :class:`InvalidURN` if not one."""
        if not isinstance(text, str) or not text.lower().startswith(URN_PREFIX.lower()):
            raise InvalidURN(f"not a GENI URN (must start with {URN_PREFIX!r}): {text!r}")
        parts = text[len(URN_PREFIX):].split("+")
        if len(parts) != 3:
            raise InvalidURN(f"a GENI URN has three '+'-separated parts after the prefix: {text!r}")
        authority, kind, name = parts
        return cls(authority=authority, type=kind, name=name)

    def __str__(self) -> str:
        return f"{URN_PREFIX}{self.authority}+{self.type}+{self.name}"

    @property
    def project(self) -> str | None:
        """The sub-authority after the first ``:`` (Emulab's project), if any."""
        _, sep, rest = self.authority.partition(":")
        return rest.split(":")[0] if sep else None


def urn_text(authority: str, kind: str, name: str) -> str:
    """``str(URN(authority, kind, name))``, checked as that is, but the authority and the
    type once per pair (the allocation engine names every new sliver this way)."""
    _check_part("name", name, _NAME)
    text = _prefix(authority, kind) + name
    if len(text) > MAX_URN_LENGTH:
        raise InvalidURN(f"URN longer than {MAX_URN_LENGTH} characters")
    return text


@cache
def _prefix(authority: str, kind: str) -> str:
    checked = URN(authority, kind, "x")
    return f"{URN_PREFIX}{checked.authority}+{checked.type}+"


def _check_part(label: str, value: str, pattern: re.Pattern[str]) -> None:
    if not isinstance(value, str) or not value:
        raise InvalidURN(f"URN {label} is empty")
    if not pattern.match(value):
        raise InvalidURN(f"URN {label} {value!r} has characters GENI URNs do not allow")
