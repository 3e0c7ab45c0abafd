"""Repositories of the aggregate: sites, nodes, enrollment tokens, desired state, slivers,
links and node commands. :class:`AggregateStore` binds them all to one connection.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import Connection, delete, select, update

from slicelab.domain.errors import NotFound
from slicelab.domain.nodes import BootState, Inventory, Node, Site
from slicelab.domain.urn import URN

from .base import Repository
from .bulk import Times, insert_rows
from .node_tables import (
    enrollment_tokens,
    node_commands,
    node_desired,
    nodes,
    sites,
    slice_links,
    slivers,
)
from .tables import projects, slices

__all__ = [
    "AggregateStore",
    "CommandRepository",
    "CommandRow",
    "DesiredRepository",
    "DesiredRow",
    "EnrollmentRepository",
    "EnrollmentRow",
    "LINK_COLUMNS",
    "LinkRepository",
    "LinkRow",
    "NodeRepository",
    "SiteRepository",
    "SliverRepository",
    "SliverRow",
    "sliver_of",
    "sliver_query",
    "SLIVER_COLUMNS",
    "link_values",
    "sliver_values",
]


def _site(row: Any) -> Site:
    return Site(name=row.name, urn=URN.parse(row.urn), created=row.created, id=row.id)


class SiteRepository(Repository):
    def add(self, site: Site) -> Site:
        with self.unique(f"site {site.name!r}"):
            result = self.connection.execute(sites.insert().values(
                name=site.name, urn=str(site.urn), created=site.created))
        key = result.inserted_primary_key
        assert key is not None, "an insert has a primary key"
        return replace(site, id=key[0])

    def find(self, name: str) -> Site | None:
        row = self.connection.execute(select(sites).where(sites.c.name == name)).first()
        return _site(row) if row else None

    def get(self, name: str) -> Site:
        site = self.find(name)
        if site is None:
            raise NotFound(f"no site {name!r}", field="site")
        return site

    def list(self) -> list[Site]:
        return [_site(r) for r in self.connection.execute(select(sites).order_by(sites.c.name))]


def _node(row: Any) -> Node:
    return Node(id=row.id, name=row.name, site=row.site, urn=URN.parse(row.urn),
                boot_state=BootState(row.boot_state), inventory=Inventory.from_json(row.inventory),
                host_ip=row.host_ip, last_seen=row.last_seen, auth_failures=row.auth_failures)


def _node_query() -> Any:
    return (select(nodes, sites.c.name.label("site"))
            .join(sites, sites.c.id == nodes.c.site_id).order_by(nodes.c.name))


def _locked(query: Any) -> Any:
    return query.with_for_update(of=nodes)


class NodeRepository(Repository):
    def add(self, node: Node, *, sealed_key: str, created: datetime) -> None:
        site_id = SiteRepository(self.connection).get(node.site).id
        with self.unique(f"node {node.name!r}"):
            self.connection.execute(nodes.insert().values(
                id=node.id, name=node.name, site_id=site_id, urn=str(node.urn),
                boot_state=node.boot_state.value, inventory=node.inventory.to_json(),
                host_ip=node.host_ip, last_seen=node.last_seen,
                auth_failures=node.auth_failures, sealed_key=sealed_key, created=created))

    def find(self, node_id: str, *, lock: bool = False) -> Node | None:
        """The node; with ``lock``, its row stays locked until the transaction ends."""
        query = _node_query().where(nodes.c.id == node_id)
        row = self.connection.execute(_locked(query) if lock else query).first()
        return _node(row) if row else None

    def by_name(self, name: str, *, lock: bool = False) -> Node:
        query = _node_query().where(nodes.c.name == name)
        row = self.connection.execute(_locked(query) if lock else query).first()
        if row is None:
            raise NotFound(f"no node {name!r}", field="node")
        return _node(row)

    def name_taken(self, name: str) -> bool:
        query = select(nodes.c.id).where(nodes.c.name == name)
        return self.connection.execute(query).first() is not None

    def list(self) -> list[Node]:
        return [_node(r) for r in self.connection.execute(_node_query())]

    def by_ids(self, node_ids: Collection[str]) -> tuple[Node, ...]:
        """The nodes of ``node_ids`` that exist, by name."""
        ids = sorted(set(node_ids))
        found: dict[str, Node] = {}
        for start in range(0, len(ids), 500):
            query = _node_query().where(nodes.c.id.in_(ids[start:start + 500]))
            found.update((r.id, _node(r)) for r in self.connection.execute(query))
        return tuple(sorted(found.values(), key=lambda n: n.name))

    def lock_all(self) -> None:
        """Hold every node row until the transaction ends (PostgreSQL; SQLite's writes are
        serialized already), so that two placements never count the same free capacity."""
        self.connection.execute(select(nodes.c.id).with_for_update()).all()

    def sealed_key(self, node_id: str) -> str | None:
        query = select(nodes.c.sealed_key).where(nodes.c.id == node_id)
        return self.connection.execute(query).scalar_one_or_none()

    def save(self, node: Node) -> None:
        """Write the changeable fields: boot state, inventory, address, contact, failures."""
        self.connection.execute(update(nodes).where(nodes.c.id == node.id).values(
            boot_state=node.boot_state.value, inventory=node.inventory.to_json(),
            host_ip=node.host_ip, last_seen=node.last_seen, auth_failures=node.auth_failures))


@dataclass(frozen=True, slots=True)
class EnrollmentRow:
    id: int
    site: str
    node_name: str | None
    expires: datetime
    used: datetime | None


class EnrollmentRepository(Repository):
    def add(self, *, site: str, token_hash: str, node_name: str | None, created: datetime,
            expires: datetime) -> None:
        site_id = SiteRepository(self.connection).get(site).id
        self.connection.execute(enrollment_tokens.insert().values(
            site_id=site_id, token_hash=token_hash, node_name=node_name, created=created,
            expires=expires))

    def by_hash(self, token_hash: str) -> EnrollmentRow | None:
        query = (select(enrollment_tokens, sites.c.name.label("site"))
                 .join(sites, sites.c.id == enrollment_tokens.c.site_id)
                 .where(enrollment_tokens.c.token_hash == token_hash))
        row = self.connection.execute(query).first()
        if row is None:
            return None
        return EnrollmentRow(row.id, row.site, row.node_name, row.expires, row.used)

    def use(self, token_id: int, when: datetime) -> bool:
        """Mark the token used; False if it already was (a concurrent enrollment won)."""
        result = self.connection.execute(
            update(enrollment_tokens)
            .where(enrollment_tokens.c.id == token_id, enrollment_tokens.c.used.is_(None))
            .values(used=when))
        return result.rowcount == 1


@dataclass(frozen=True, slots=True)
class DesiredRow:
    generation: int
    digest: str
    document: dict[str, Any]
    applied: int


class DesiredRepository(Repository):
    def get(self, node_id: str, *, lock: bool = False) -> DesiredRow | None:
        query = select(node_desired).where(node_desired.c.node_id == node_id)
        row = self.connection.execute(query.with_for_update() if lock else query).first()
        if row is None:
            return None
        return DesiredRow(row.generation, row.digest, dict(row.document), row.applied)

    def put(self, node_id: str, row: DesiredRow) -> None:
        values = {"generation": row.generation, "digest": row.digest, "document": row.document,
                  "applied": row.applied}
        done = self.connection.execute(update(node_desired)
                                       .where(node_desired.c.node_id == node_id).values(**values))
        if done.rowcount == 0:
            self.connection.execute(node_desired.insert().values(node_id=node_id, **values))


@dataclass(frozen=True, slots=True)
class SliverRow:
    id: str
    slice_id: int
    project: str
    slice: str
    node_id: str
    client_id: str
    request: dict[str, Any]
    plan: dict[str, Any]
    allocation_state: str
    operational_state: str
    reported_state: str | None = None
    error: str | None = None
    control_ip: str | None = None
    ssh_host: str | None = None
    ssh_port: int | None = None


_SLIVER_FIELDS = ("request", "plan", "allocation_state", "operational_state", "reported_state",
                  "error", "control_ip", "ssh_host", "ssh_port", "node_id")
SLIVER_COLUMNS = ("id", "slice_id", "client_id", "created", *_SLIVER_FIELDS)
LINK_COLUMNS = ("id", "slice_id", "client_id", "vni", "subnet", "capacity_mbps", "request",
                "sliver_ids", "state", "error")


def sliver_query() -> Any:
    return (select(slivers, slices.c.name.label("slice"), projects.c.name.label("project"))
            .join(slices, slices.c.id == slivers.c.slice_id)
            .join(projects, projects.c.id == slices.c.project_id)
            .order_by(slivers.c.slice_id, slivers.c.client_id))


def sliver_of(row: Any) -> SliverRow:
    return SliverRow(row.id, row.slice_id, row.project, row.slice, row.node_id, row.client_id,
                     dict(row.request), dict(row.plan), row.allocation_state,
                     row.operational_state, row.reported_state, row.error, row.control_ip,
                     row.ssh_host, row.ssh_port)


def sliver_values(rows: Sequence[SliverRow], created: str) -> list[list[Any]]:
    """The rows in :data:`SLIVER_COLUMNS` order (``created`` in the stored form)."""
    return [[r.id, r.slice_id, r.client_id, created, r.request, r.plan, r.allocation_state,
             r.operational_state, r.reported_state, r.error, r.control_ip, r.ssh_host,
             r.ssh_port, r.node_id] for r in rows]


class SliverRepository(Repository):
    def add(self, row: SliverRow, *, created: datetime) -> None:
        values = {f: getattr(row, f) for f in _SLIVER_FIELDS}
        with self.unique(f"sliver {row.client_id!r}", field="client_id"):
            self.connection.execute(slivers.insert().values(
                id=row.id, slice_id=row.slice_id, client_id=row.client_id, created=created,
                **values))

    def add_many(self, rows: Sequence[SliverRow], *, created: datetime) -> None:
        """Insert several slivers with one statement (the rows as one JSON parameter, see
        :mod:`.bulk`)."""
        if not rows:
            return
        values = sliver_values(rows, Times(self.connection.dialect.name)(created))
        with self.unique_batch(f"sliver {rows[0].client_id!r}", field="client_id"):
            insert_rows(self.connection, slivers, SLIVER_COLUMNS, values)

    def save(self, row: SliverRow) -> None:
        values = {f: getattr(row, f) for f in _SLIVER_FIELDS}
        self.connection.execute(update(slivers).where(slivers.c.id == row.id).values(**values))

    def delete(self, sliver_ids: Collection[str]) -> None:
        if sliver_ids:
            self.connection.execute(delete(slivers).where(slivers.c.id.in_(list(sliver_ids))))

    def of_slice(self, slice_id: int) -> list[SliverRow]:
        query = sliver_query().where(slivers.c.slice_id == slice_id)
        return [sliver_of(r) for r in self.connection.execute(query)]

    def live(self, now: datetime) -> list[SliverRow]:
        """Slivers of every slice that has not expired."""
        query = sliver_query().where(slices.c.expires > now)
        return [sliver_of(r) for r in self.connection.execute(query)]

    def ports_on(self, node_ids: Collection[str] | None,
                 now: datetime) -> list[tuple[str, str, int]]:
        """``(sliver id, node id, first control port)`` of the slivers on ``node_ids`` (every
        node when None; those of expired slices too, until they are removed)."""
        del now
        if node_ids is not None and not node_ids:
            return []
        query = select(slivers.c.id, slivers.c.node_id, slivers.c.plan)
        if node_ids is not None:
            query = query.where(slivers.c.node_id.in_(sorted(node_ids)))
        return [(r[0], r[1], int(r[2]["control"]["first_port"]))
                for r in self.connection.execute(query)]

    def by_ids(self, sliver_ids: Collection[str]) -> list[SliverRow]:
        if not sliver_ids:
            return []
        query = sliver_query().where(slivers.c.id.in_(list(sliver_ids)))
        return [sliver_of(r) for r in self.connection.execute(query)]


@dataclass(frozen=True, slots=True)
class LinkRow:
    id: str
    slice_id: int
    client_id: str
    vni: int
    subnet: str
    capacity_mbps: int | None
    request: dict[str, Any]
    sliver_ids: tuple[str, ...]
    state: str | None = None
    error: str | None = None


def _link(row: Any) -> LinkRow:
    return LinkRow(row.id, row.slice_id, row.client_id, row.vni, row.subnet, row.capacity_mbps,
                   dict(row.request), tuple(row.sliver_ids), row.state, row.error)


def link_values(rows: Sequence[LinkRow]) -> list[list[Any]]:
    """The rows in :data:`LINK_COLUMNS` order."""
    return [[r.id, r.slice_id, r.client_id, r.vni, r.subnet, r.capacity_mbps, r.request,
             r.sliver_ids, r.state, r.error] for r in rows]


class LinkRepository(Repository):
    def add(self, row: LinkRow) -> None:
        with self.unique(f"link {row.client_id!r}", field="links"):
            self.connection.execute(slice_links.insert().values(
                id=row.id, slice_id=row.slice_id, client_id=row.client_id, vni=row.vni,
                subnet=row.subnet, capacity_mbps=row.capacity_mbps, request=row.request,
                sliver_ids=list(row.sliver_ids), state=row.state, error=row.error))

    def add_many(self, rows: Sequence[LinkRow]) -> None:
        """Insert several links with one statement (as :meth:`SliverRepository.add_many`)."""
        if not rows:
            return
        with self.unique_batch(f"link {rows[0].client_id!r}", field="links"):
            insert_rows(self.connection, slice_links, LINK_COLUMNS, link_values(rows))

    def used(self) -> list[tuple[int, int, str]]:
        """``(slice id, vni, subnet)`` of every link."""
        query = select(slice_links.c.slice_id, slice_links.c.vni, slice_links.c.subnet)
        return [(r[0], r[1], r[2]) for r in self.connection.execute(query)]

    def save(self, row: LinkRow) -> None:
        self.connection.execute(update(slice_links).where(slice_links.c.id == row.id).values(
            sliver_ids=list(row.sliver_ids), state=row.state, error=row.error))

    def delete(self, link_ids: Collection[str]) -> None:
        if link_ids:
            self.connection.execute(delete(slice_links)
                                    .where(slice_links.c.id.in_(list(link_ids))))

    def of_slice(self, slice_id: int) -> list[LinkRow]:
        query = (select(slice_links).where(slice_links.c.slice_id == slice_id)
                 .order_by(slice_links.c.client_id))
        return [_link(r) for r in self.connection.execute(query)]

    def live(self, now: datetime) -> list[LinkRow]:
        query = (select(slice_links).join(slices, slices.c.id == slice_links.c.slice_id)
                 .where(slices.c.expires > now).order_by(slice_links.c.id))
        return [_link(r) for r in self.connection.execute(query)]

    def all(self) -> list[LinkRow]:
        return [_link(r) for r in self.connection.execute(select(slice_links))]


@dataclass(frozen=True, slots=True)
class CommandRow:
    id: str
    node_id: str
    sliver_id: str
    argv: tuple[str, ...]
    timeout: float
    finished: datetime | None = None
    exit_code: int | None = None
    stdout: str | None = None
    stderr: str | None = None


def _command(row: Any) -> CommandRow:
    return CommandRow(row.id, row.node_id, row.sliver_id, tuple(row.argv), row.timeout,
                      row.finished, row.exit_code, row.stdout, row.stderr)


class CommandRepository(Repository):
    def add(self, row: CommandRow, *, created: datetime) -> None:
        self.connection.execute(node_commands.insert().values(
            id=row.id, node_id=row.node_id, sliver_id=row.sliver_id, argv=list(row.argv),
            timeout=row.timeout, created=created))

    def find(self, command_id: str) -> CommandRow | None:
        query = select(node_commands).where(node_commands.c.id == command_id)
        row = self.connection.execute(query).first()
        return _command(row) if row else None

    def pending(self, node_id: str) -> list[CommandRow]:
        query = (select(node_commands)
                 .where(node_commands.c.node_id == node_id, node_commands.c.finished.is_(None))
                 .order_by(node_commands.c.created, node_commands.c.id))
        return [_command(r) for r in self.connection.execute(query)]

    def finish(self, command_id: str, *, when: datetime, exit_code: int | None, stdout: str,
               stderr: str) -> None:
        self.connection.execute(update(node_commands).where(node_commands.c.id == command_id)
                                .values(finished=when, exit_code=exit_code, stdout=stdout,
                                        stderr=stderr))


class AggregateStore:
    """Every aggregate repository on one connection (a unit of work's)."""

    def __init__(self, connection: Connection) -> None:
        self.sites = SiteRepository(connection)
        self.nodes = NodeRepository(connection)
        self.enrollments = EnrollmentRepository(connection)
        self.desired = DesiredRepository(connection)
        self.slivers = SliverRepository(connection)
        self.links = LinkRepository(connection)
        self.commands = CommandRepository(connection)
