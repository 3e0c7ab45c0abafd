"""Slices: a project's named container for slivers, with an expiry and members.

A slice's URN is ``urn:publicid:IDN+<authority>:<project>+slice+<name>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from .errors import Conflict, PolicyViolation
from .members import require_utc
from .names import PROJECT_NAME, SLICE_NAME, check_name
from .urn import URN

__all__ = ["Slice", "slice_urn"]


def slice_urn(authority: str, project: str, name: str) -> URN:
    """The URN of slice ``name`` of ``project`` under ``authority``."""
    check_name(PROJECT_NAME, project, field="project")
    check_name(SLICE_NAME, name)
    return URN(authority=f"{authority}:{project}", type="slice", name=name)


@dataclass(slots=True)
class Slice:
    project: str
    name: str
    urn: URN
    created: datetime
    expires: datetime
    creator: str
    members: set[str] = field(default_factory=set)
    id: int | None = None

    def __post_init__(self) -> None:
        check_name(PROJECT_NAME, self.project, field="project")
        check_name(SLICE_NAME, self.name)
        require_utc(self.created, field="created")
        require_utc(self.expires, field="expires")

    def add_member(self, member: str, *, project_members: set[str] | frozenset[str]) -> None:
        """Add ``member``, who must belong to the slice's project."""
        if member not in project_members:
            raise PolicyViolation(
                f"{member!r} is not a member of project {self.project!r}; "
                "slice members must be project members", field="member")
        if member in self.members:
            raise Conflict(f"{member!r} is already a member of slice {self.name!r}",
                           field="member")
        self.members.add(member)
