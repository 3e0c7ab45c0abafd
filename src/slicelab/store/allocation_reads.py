"""What an allocation batch reads before its jobs run, for all of them at once: the projects
named with their memberships, the slices named with their members, and the slivers of those
slices (and of slices given by id).

On PostgreSQL the three statements go in one round trip (a pipeline, which also carries the
transaction's ``BEGIN``), sent as driver SQL compiled once from the SQLAlchemy queries, with
the names as array parameters (``= ANY(...)``): no statement compiled per call, no parameter
rendered per name. The allocation engine's thread runs it once per batch, and every round
trip and statement there is time no job is placed. SQLite runs the same queries through
SQLAlchemy, each list one JSON array parameter unpacked by ``json_each`` (one statement,
compiled once, whatever the number of names)."""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass, field
from functools import cache
from typing import Any

from psycopg.rows import namedtuple_row
from sqlalchemy import (
    ARRAY,
    Connection,
    Dialect,
    Integer,
    Select,
    String,
    and_,
    any_,
    bindparam,
    func,
    literal_column,
    select,
)

from slicelab.domain.projects import Project, ProjectRole
from slicelab.domain.slices import Slice

from . import jsontext
from .aggregate import SliverRow, sliver_of, sliver_query
from .bulk import pipelined
from .slices import slice_of, slice_query
from .tables import members, project_members, projects, slice_members, slices
from .types import as_utc

__all__ = ["AllocationReads", "read_for_allocation"]

@dataclass(slots=True)
class AllocationReads:
    """What :func:`read_for_allocation` found (what was not found is absent)."""

    projects: dict[str, Project] = field(default_factory=dict)
    slices: dict[tuple[str, str], Slice] = field(default_factory=dict)
    slivers: dict[int, list[SliverRow]] = field(default_factory=dict)  # by slice id


def read_for_allocation(connection: Connection, project_names: Collection[str],
                        slice_keys: Collection[tuple[str, str]],
                        slice_ids: Collection[int] = ()) -> AllocationReads:
    """Projects ``project_names`` with their memberships (only those: no invitations or join
    requests), slices ``(project, name)`` with their members, and the slivers of those
    slices and of slices ``slice_ids``."""
    wanted = set(slice_keys)
    owners, slice_names = sorted({p for p, _ in wanted}), sorted({n for _, n in wanted})
    params = {"projects": sorted(set(project_names) | set(owners)), "slice_projects": owners,
              "slice_names": slice_names, "ids": sorted(set(slice_ids))}
    if connection.dialect.name == "postgresql":
        statements = _pg_statements(connection.dialect)
        if not params["ids"]:
            statements = statements[:3]
        rows = pipelined(connection, [(sql, params) for sql in statements],
                         row_factory=namedtuple_row)
        return _found(rows[0], rows[1], [r for part in rows[2:] for r in part], wanted,
                      project_names=set(project_names))
    queries, each = _sqlite_statements(), jsontext.dumps
    project_rows = slice_rows = sliver_rows = []
    if project_names:
        project_rows = list(connection.execute(queries[0], {"projects": each(params["projects"])}))
    if wanted:
        slice_rows = list(connection.execute(queries[1], {"slice_projects": each(owners),
                                                          "slice_names": each(slice_names)}))
    ids = {r.id for r in slice_rows if (r.project, r.name) in wanted} | set(slice_ids)
    if ids:
        sliver_rows = list(connection.execute(queries[2], {"ids": each(sorted(ids))}))
    return _found(project_rows, slice_rows, sliver_rows, wanted,
                  project_names=set(project_names))


def _found(project_rows: Iterable[Any], slice_rows: Iterable[Any], sliver_rows: Iterable[Any],
           wanted: set[tuple[str, str]], *, project_names: set[str]) -> AllocationReads:
    out = AllocationReads()
    for r in project_rows:
        if r.name not in project_names:
            continue
        project = out.projects.get(r.name)
        if project is None:
            project = out.projects[r.name] = Project(name=r.name, description=r.description,
                                                     created=as_utc(r.created), id=r.id)
        if r.member is not None:
            project.memberships[r.member] = ProjectRole(r.role)
    chosen: dict[tuple[str, str], Any] = {}
    names: dict[tuple[str, str], set[str]] = {}
    for r in slice_rows:
        key = (r.project, r.name)
        if key not in wanted:
            continue
        chosen.setdefault(key, r)
        found = names.setdefault(key, set())
        if r.member is not None:
            found.add(r.member)
    out.slices = {k: slice_of(r, names[k]) for k, r in chosen.items()}
    for r in sliver_rows:
        out.slivers.setdefault(r.slice_id, []).append(sliver_of(r))
    return out


def _projects_query() -> Select[Any]:
    return (select(projects, members.c.name.label("member"), project_members.c.role)
            .outerjoin(project_members, project_members.c.project_id == projects.c.id)
            .outerjoin(members, members.c.id == project_members.c.member_id))


def _slices_query() -> Select[Any]:
    query: Select[Any] = slice_query().add_columns(members.c.name.label("member"))
    return (query.outerjoin(slice_members, slice_members.c.slice_id == slices.c.id)
            .outerjoin(members, members.c.id == slice_members.c.member_id))


@cache
def _sqlite_statements() -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The statements on SQLite, each list a JSON array parameter (``IN (SELECT value FROM
    json_each(?))``): one statement whatever the number of names, compiled once."""
    def each(key: str) -> Any:
        return select(literal_column("value")).select_from(func.json_each(bindparam(key)))
    return (_projects_query().where(projects.c.name.in_(each("projects"))),
            _slices_query().where(projects.c.name.in_(each("slice_projects")),
                                  slices.c.name.in_(each("slice_names"))),
            sliver_query().where(slices.c.id.in_(each("ids"))))


@cache
def _pg_statements(dialect: Dialect) -> tuple[str, ...]:
    """The statements as PostgreSQL driver SQL (``%(name)s`` parameters): the projects, the
    slices, the slivers of the slices named, the slivers of the slices given by id."""
    def names(key: str) -> Any:
        return any_(bindparam(key, type_=ARRAY(String)))
    named = and_(projects.c.name == names("slice_projects"), slices.c.name == names("slice_names"))
    queries = (_projects_query().where(projects.c.name == names("projects")),
               _slices_query().where(named),
               sliver_query().where(named),
               sliver_query().where(slices.c.id == any_(bindparam("ids", type_=ARRAY(Integer)))))
    return tuple(str(q.compile(dialect=dialect)) for q in queries)
