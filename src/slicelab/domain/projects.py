"""Projects: a PI-led group of members that owns slices.

Membership has a role, ``pi`` or ``member``. A PI invites members; a member who was invited
joins at once, anyone else who asks to join files a request that a PI approves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from .errors import Conflict, InvalidInput, NotFound
from .members import require_utc
from .names import PROJECT_NAME, check_name

__all__ = [
    "DESCRIPTION_MAX_LENGTH",
    "JoinOutcome",
    "Project",
    "ProjectRole",
]

DESCRIPTION_MAX_LENGTH = 1000


class ProjectRole(StrEnum):
    PI = "pi"
    MEMBER = "member"


class JoinOutcome(StrEnum):
    JOINED = "joined"
    REQUESTED = "requested"


@dataclass(slots=True)
class Project:
    """A project with its memberships (name -> role), invitations and join requests."""

    name: str
    description: str
    created: datetime
    memberships: dict[str, ProjectRole] = field(default_factory=dict)
    invitations: set[str] = field(default_factory=set)
    requests: set[str] = field(default_factory=set)
    id: int | None = None

    def __post_init__(self) -> None:
        check_name(PROJECT_NAME, self.name)
        require_utc(self.created, field="created")
        if len(self.description) > DESCRIPTION_MAX_LENGTH:
            raise InvalidInput(
                f"description is longer than {DESCRIPTION_MAX_LENGTH} characters",
                field="description")

    def role_of(self, member: str) -> ProjectRole | None:
        return self.memberships.get(member)

    def is_pi(self, member: str) -> bool:
        return self.memberships.get(member) is ProjectRole.PI

    def add(self, member: str, role: ProjectRole = ProjectRole.MEMBER) -> None:
        if member in self.memberships:
            raise Conflict(f"{member!r} is already a member of project {self.name!r}",
                           field="member")
        self.memberships[member] = role
        self.invitations.discard(member)
        self.requests.discard(member)

    def invite(self, member: str) -> None:
        if member in self.memberships:
            raise Conflict(f"{member!r} is already a member of project {self.name!r}",
                           field="member")
        if member in self.requests:
            raise Conflict(f"{member!r} has asked to join project {self.name!r}; "
                           "approve the request instead", field="member")
        if member in self.invitations:
            raise Conflict(f"{member!r} is already invited to project {self.name!r}",
                           field="member")
        self.invitations.add(member)

    def join(self, member: str) -> JoinOutcome:
        """Accept an invitation at once, or file a request (again: no change)."""
        if member in self.invitations:
            self.add(member)
            return JoinOutcome.JOINED
        if member in self.memberships:
            raise Conflict(f"{member!r} is already a member of project {self.name!r}",
                           field="member")
        self.requests.add(member)
        return JoinOutcome.REQUESTED

    def approve(self, member: str) -> None:
        if member not in self.requests:
            raise NotFound(f"{member!r} has no pending request to join project {self.name!r}",
                           field="member")
        self.add(member)
