"""The project repository: a project is loaded and saved whole, with its memberships."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, delete, insert, select

from slicelab.domain.errors import NotFound
from slicelab.domain.projects import Project, ProjectRole

from .base import Page, Repository
from .members import MemberRepository
from .tables import join_requests, members, project_invitations, project_members, projects

__all__ = ["ProjectRepository"]


class ProjectRepository(Repository):
    def add(self, project: Project) -> Project:
        with self.unique(f"project {project.name!r}"):
            result = self.connection.execute(projects.insert().values(
                name=project.name, description=project.description, created=project.created))
        project.id = result.inserted_primary_key[0]
        self.save(project)
        return project

    def find(self, name: str) -> Project | None:
        row = self.connection.execute(select(projects).where(projects.c.name == name)).first()
        return self._load(row) if row else None

    def get(self, name: str, *, field: str = "project") -> Project:
        project = self.find(name)
        if project is None:
            raise NotFound(f"no project {name!r}", field=field)
        return project

    def list(self, *, member: str | None, limit: int, offset: int) -> Page[Project]:
        """All projects, or only those ``member`` belongs to."""
        query = select(projects).order_by(projects.c.name)
        if member is not None:
            query = query.where(projects.c.id.in_(
                select(project_members.c.project_id)
                .join(members, members.c.id == project_members.c.member_id)
                .where(members.c.name == member)))
        rows = list(self.connection.execute(query.limit(limit).offset(offset)))
        return Page([self._load(r) for r in rows], self.count(query), limit, offset)

    def save(self, project: Project) -> None:
        """Write the project's memberships, invitations and requests as they are now."""
        assert project.id is not None, "save() a project that was added"
        names = set(project.memberships) | project.invitations | project.requests
        ids = MemberRepository(self.connection).ids(names)
        role_rows = [{"member_id": ids[n], "role": r.value} for n, r in project.memberships.items()]
        self._replace(project_members, project.id, role_rows)
        self._replace(project_invitations, project.id,
                      [{"member_id": ids[n]} for n in project.invitations])
        self._replace(join_requests, project.id,
                      [{"member_id": ids[n]} for n in project.requests])

    def _replace(self, table: Table, project_id: int, rows: list[dict[str, Any]]) -> None:
        self.connection.execute(delete(table).where(table.c.project_id == project_id))
        if rows:
            self.connection.execute(insert(table), [{**r, "project_id": project_id}
                                                    for r in rows])

    def _load(self, row: Any) -> Project:
        project = Project(name=row.name, description=row.description, created=row.created,
                          id=row.id)
        for name, role in self._children(project_members, row.id, project_members.c.role):
            project.memberships[name] = ProjectRole(role)
        project.invitations = {n for n, _ in self._children(project_invitations, row.id)}
        project.requests = {n for n, _ in self._children(join_requests, row.id)}
        return project

    def _children(self, table: Table, project_id: int, *extra: Any) -> list[tuple[str, Any]]:
        query = (select(members.c.name, *extra).join(table, members.c.id == table.c.member_id)
                 .where(table.c.project_id == project_id).order_by(members.c.name))
        return [(r[0], r[1] if extra else None) for r in self.connection.execute(query)]
