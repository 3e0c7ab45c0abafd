"""Members of the testbed, their SSH keys and their API tokens (the stored, secret-free part).

A member has a name (see :data:`.names.MEMBER_NAME`), an e-mail address, platform roles
(``admin``, ``operator``) and may be granted ``can_lead``: the right to create projects and so
to be the PI of one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum

from .errors import AuthenticationFailed, InvalidInput
from .names import MEMBER_NAME, check_name

__all__ = [
    "EMAIL_MAX_LENGTH",
    "ApiToken",
    "Member",
    "PlatformRole",
    "SSHKey",
    "check_email",
    "require_utc",
]

EMAIL_MAX_LENGTH = 254
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


class PlatformRole(StrEnum):
    ADMIN = "admin"
    OPERATOR = "operator"


def check_email(value: str, *, field: str = "email") -> str:
    """Return ``value`` if it looks like ``local@domain.tld``; raise :class:`InvalidInput`."""
    if len(value) > EMAIL_MAX_LENGTH:
        raise InvalidInput(f"email is longer than {EMAIL_MAX_LENGTH} characters", field=field)
    if not _EMAIL.match(value):
        raise InvalidInput(f"email {value!r} must look like name@example.org", field=field)
    return value


def require_utc(value: datetime, *, field: str) -> datetime:
    """Refuse naive datetimes: every time in slicelab is timezone-aware."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{field} must carry a timezone (UTC)", field=field)
    return value


@dataclass(frozen=True, slots=True)
class Member:
    name: str
    email: str
    created: datetime
    can_lead: bool = False
    roles: frozenset[PlatformRole] = field(default_factory=frozenset)
    id: int | None = None

    def __post_init__(self) -> None:
        check_name(MEMBER_NAME, self.name)
        check_email(self.email)
        require_utc(self.created, field="created")
        object.__setattr__(self, "roles", frozenset(PlatformRole(r) for r in self.roles))

    @property
    def is_admin(self) -> bool:
        return PlatformRole.ADMIN in self.roles

    def with_id(self, member_id: int) -> Member:
        return replace(self, id=member_id)


@dataclass(frozen=True, slots=True)
class SSHKey:
    """An SSH public key of a member, already parsed and judged acceptable."""

    member: str
    name: str
    type: str
    fingerprint: str
    bits: int
    public_key: str
    created: datetime
    id: int | None = None


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A named API token of a member. Only a hash of its secret is ever kept."""

    member: str
    name: str
    token_hash: str
    created: datetime
    expires: datetime
    revoked: datetime | None = None
    id: int | None = None

    def check(self, now: datetime) -> None:
        """Raise :class:`AuthenticationFailed` saying why the token is unusable at ``now``."""
        if self.revoked is not None:
            raise AuthenticationFailed(
                f"token {self.name!r} was revoked at {self.revoked.isoformat()}",
                field="Authorization")
        if now >= self.expires:
            raise AuthenticationFailed(
                f"token {self.name!r} expired at {self.expires.isoformat()}",
                field="Authorization")
