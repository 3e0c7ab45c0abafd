"""What the slicelab REST API returns, as small typed, immutable objects.

Every model ignores fields it does not know, so that a newer server works with an older
client. Times are timezone-aware :class:`datetime.datetime` objects in UTC.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

__all__ = [
    "ApiKey",
    "ApiToken",
    "JoinResult",
    "Member",
    "NewMember",
    "Project",
    "ProjectMember",
    "Slice",
    "SliceMember",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    def to_json(self) -> dict[str, Any]:
        """A plain JSON-ready dict (times as ISO 8601 strings)."""
        return self.model_dump(mode="json")


def _names(value: Any) -> Any:
    """Accept a list of names or of objects with a ``name`` or ``member`` field; None is none."""
    if value is None:
        return ()
    if not isinstance(value, list):
        return value
    return [_name_of(item) for item in value]


def _name_of(item: Any) -> Any:
    if isinstance(item, dict):
        return item.get("name", item.get("member", item))
    return item


class Member(_Model):
    name: str
    email: str
    roles: tuple[str, ...] = ()
    can_lead: bool = False
    created: datetime | None = None


class NewMember(_Model):
    """A member just made, with the API token they sign in with (shown only once)."""

    member: Member
    token: str


class ApiKey(_Model):
    """An SSH public key registered to the caller."""

    id: str
    name: str | None = None
    type: str
    fingerprint: str
    bits: int | None = None
    created: datetime | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class ApiToken(_Model):
    """An API token; ``token`` (the secret) is only present right after creation."""

    id: str
    name: str
    expires: datetime | None = None
    created: datetime | None = None
    revoked: datetime | None = None
    token: str | None = None

    @field_validator("id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        return str(value) if isinstance(value, int) else value


class ProjectMember(_Model):
    name: str
    role: str


class Project(_Model):
    name: str
    description: str = ""
    created: datetime | None = None
    members: tuple[ProjectMember, ...] = ()
    invitations: tuple[str, ...] = ()
    requests: tuple[str, ...] = ()

    _names = field_validator("invitations", "requests", mode="before")(_names)

    def role_of(self, member: str) -> str | None:
        """The role ``member`` holds in this project, or None if not a member."""
        return next((m.role for m in self.members if m.name == member), None)


class SliceMember(_Model):
    name: str
    role: str | None = None


class Slice(_Model):
    project: str
    name: str
    urn: str
    created: datetime | None = None
    expires: datetime
    creator: str | None = None
    members: tuple[SliceMember, ...] = ()

    @field_validator("members", mode="before")
    @classmethod
    def _members(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [{"name": item} if isinstance(item, str) else item for item in value]
        return value

    @property
    def ref(self) -> str:
        """``project/slice``, the name the CLI and SDK use."""
        return f"{self.project}/{self.name}"


class JoinResult(_Model):
    """``joined`` when the caller was invited, ``requested`` when a PI must approve."""

    status: str
