"""The slice repository."""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.orm import aliased

from slicelab.domain.errors import NotFound
from slicelab.domain.slices import Slice
from slicelab.domain.urn import URN

from .base import Page, Repository
from .members import MemberRepository
from .tables import members, projects, slice_members, slices
from .types import as_utc

__all__ = ["SliceRepository", "slice_of", "slice_query"]

_creator = aliased(members)


def slice_query() -> Any:
    """Slices with their project's and creator's names (``project``, ``creator``)."""
    return (select(slices, projects.c.name.label("project"), _creator.c.name.label("creator"))
            .join(projects, projects.c.id == slices.c.project_id)
            .join(_creator, _creator.c.id == slices.c.creator_id))


class SliceRepository(Repository):
    def add(self, item: Slice, *, project_id: int) -> Slice:
        creator_id = MemberRepository(self.connection).ids({item.creator})[item.creator]
        with self.unique(f"slice {item.name!r} in project {item.project!r}"):
            result = self.connection.execute(slices.insert().values(
                project_id=project_id, name=item.name, urn=str(item.urn), created=item.created,
                expires=item.expires, creator_id=creator_id))
        item.id = result.inserted_primary_key[0]
        self.save(item)
        return item

    def find(self, project: str, name: str) -> Slice | None:
        query = slice_query().where(projects.c.name == project, slices.c.name == name)
        row = self.connection.execute(query).first()
        return self._load(row) if row else None

    def get(self, project: str, name: str) -> Slice:
        item = self.find(project, name)
        if item is None:
            raise NotFound(f"no slice {name!r} in project {project!r}", field="slice")
        return item

    def list(self, *, projects_in: Collection[str] | None, limit: int,
             offset: int) -> Page[Slice]:
        """Slices of the named projects, or of all projects when ``projects_in`` is None."""
        query = slice_query().order_by(projects.c.name, slices.c.name)
        if projects_in is not None:
            query = query.where(projects.c.name.in_(list(projects_in)))
        rows = list(self.connection.execute(query.limit(limit).offset(offset)))
        return Page([self._load(r) for r in rows], self.count(query), limit, offset)

    def save(self, item: Slice) -> None:
        """Write the expiry and the members as they are now."""
        assert item.id is not None, "save() a slice that was added"
        self.connection.execute(update(slices).where(slices.c.id == item.id)
                                .values(expires=item.expires))
        self.connection.execute(delete(slice_members).where(slice_members.c.slice_id == item.id))
        ids = MemberRepository(self.connection).ids(item.members)
        if ids:
            self.connection.execute(insert(slice_members), [
                {"slice_id": item.id, "member_id": i} for i in ids.values()])

    def delete(self, item: Slice) -> None:
        self.connection.execute(delete(slices).where(slices.c.id == item.id))

    def _load(self, row: Any) -> Slice:
        query = (select(members.c.name)
                 .join(slice_members, members.c.id == slice_members.c.member_id)
                 .where(slice_members.c.slice_id == row.id))
        return slice_of(row, set(self.connection.execute(query).scalars()))


def slice_of(row: Any, names: set[str]) -> Slice:
    """A slice from a row of :func:`slice_query` and its members' ``names``."""
    return Slice(project=row.project, name=row.name, urn=URN.parse(row.urn),
                 created=as_utc(row.created), expires=as_utc(row.expires), creator=row.creator,
                 members=names, id=row.id)
