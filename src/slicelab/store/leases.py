"""Leases, their bookings per host, project quotas and site limits (SQLAlchemy Core).

A lease is one allocation's window ``[start, end)``; each of its slivers books its host for
that window (one row in ``bookings``, with the resources it holds). ``bookings`` repeats the
window so that the calendar loads only the bookings of the candidate hosts that overlap the
window in question (index on host and time). The migration ``0003_leases`` builds the tables.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from typing import Any

import psycopg
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Connection,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Table,
    delete,
    select,
    update,
)

from slicelab.domain.calendar import Booking, Window
from slicelab.domain.errors import Conflict, NotFound
from slicelab.domain.inventory import SiteLimits
from slicelab.domain.quotas import ProjectQuota
from slicelab.domain.resources import Resources

from .aggregate import (
    LINK_COLUMNS,
    SLIVER_COLUMNS,
    LinkRepository,
    LinkRow,
    SliverRepository,
    SliverRow,
    link_values,
    sliver_values,
)
from .base import Repository
from .bulk import Times, insert_rows, insert_sql, pg_rows_json, pipelined
from .inventory import CapacityRow, InventoryRepository, pg_set_free
from .node_tables import node_commands, nodes, sites, slice_links
from .node_tables import slivers as sliver_table
from .tables import metadata, projects, slices
from .types import UTCDateTime

__all__ = [
    "LeaseRepository",
    "LeaseRow",
    "BOOKINGS_CHANGED",
    "LINK_CHANGED",
    "NODE_CHANGED",
    "BookingsChanged",
    "Change",
    "ChangeLog",
    "LeaseStore",
    "QuotaRepository",
    "SiteLimitRepository",
    "SitePolicy",
    "booking_changes",
    "booking_epoch",
    "bookings",
    "leases",
    "project_quotas",
    "site_limits",
]

ID = 40
LOCK_CHUNK = 10_000  # host rows locked per statement, in id order across statements


def _fk(table: str) -> ForeignKey:
    return ForeignKey(f"{table}.id", ondelete="CASCADE")


leases = leases_table = Table(
    "leases", metadata,
    Column("id", String(ID), primary_key=True),
    Column("slice_id", Integer, _fk("slices"), nullable=False, index=True),
    Column("start", UTCDateTime, nullable=False),
    Column("end", UTCDateTime, nullable=False, index=True),
    Column("state", String(16), nullable=False),
    Column("provision", Boolean, nullable=False),
    Column("created", UTCDateTime, nullable=False),
)

bookings = Table(
    "bookings", metadata,
    Column("id", Integer, primary_key=True),
    Column("lease_id", String(ID), _fk("leases"), nullable=False, index=True),
    Column("node_id", String(ID), _fk("nodes"), nullable=False),
    Column("sliver_id", String(ID), nullable=True, index=True),
    Column("start", UTCDateTime, nullable=False),
    Column("end", UTCDateTime, nullable=False),
    Column("cpu_milli", Integer, nullable=False),
    Column("memory_mib", Integer, nullable=False),
    Column("disk_gib", Integer, nullable=False),
    Column("bandwidth_mbps", Integer, nullable=False),
    Column("devices", JSON, nullable=False),
    Column("exclusive", Boolean, nullable=False),
    Column("uplink_mbps", Integer, nullable=False),
    Index("ix_bookings_node_window", "node_id", "end", "start"),
)

booking_epoch = Table(
    "booking_epoch", metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("pruned", BigInteger, nullable=False),
)

booking_changes = Table(
    "booking_changes", metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True,
           autoincrement=True),
    Column("node_id", String(ID), nullable=False),
    Column("kind", String(1), nullable=False),
)

project_quotas = Table(
    "project_quotas", metadata,
    Column("project_id", Integer, _fk("projects"), primary_key=True),
    Column("cores", Float, nullable=True),
    Column("memory_mib", Integer, nullable=True),
    Column("slivers", Integer, nullable=True),
    Column("concurrent_leases", Integer, nullable=True),
    Column("longest_lease_s", Integer, nullable=True),
    Column("book_ahead_s", Integer, nullable=True),
)

site_limits = Table(
    "site_limits", metadata,
    Column("site_id", Integer, _fk("sites"), primary_key=True),
    Column("slivers_per_slice", Integer, nullable=True),
    Column("cores_per_sliver", Float, nullable=True),
    Column("memory_mib_per_sliver", Integer, nullable=True),
    Column("longest_lease_s", Integer, nullable=True),
    Column("book_ahead_s", Integer, nullable=True),
    Column("one_sliver_per_slice_per_node", Boolean, nullable=False),
)

ACTIVE = "active"
ENDED = "ended"


@dataclass(frozen=True, slots=True)
class LeaseRow:
    id: str
    slice_id: int
    project: str
    slice: str
    window: Window
    state: str
    provision: bool
    created: datetime


def _lease(row: Any) -> LeaseRow:
    return LeaseRow(row.id, row.slice_id, row.project, row.slice, Window(row.start, row.end),
                    row.state, row.provision, row.created)


def _lease_query() -> Any:
    return (select(leases, slices.c.name.label("slice"), projects.c.name.label("project"))
            .join(slices, slices.c.id == leases.c.slice_id)
            .join(projects, projects.c.id == slices.c.project_id)
            .order_by(leases.c.start, leases.c.id))


def _booking(row: Any) -> Booking:
    resources = Resources(row.cpu_milli, row.memory_mib, row.disk_gib, row.bandwidth_mbps,
                          tuple((str(n), int(c)) for n, c in row.devices))
    return Booking(row.lease_id, row.node_id, str(row.slice_id), Window(row.start, row.end),
                   resources, row.exclusive, row.uplink_mbps, row.sliver_id)


def _booking_query() -> Any:
    return (select(bookings, leases.c.slice_id).join(leases, leases.c.id == bookings.c.lease_id)
            .order_by(bookings.c.id))


def _overlapping(window: Window) -> Any:
    return (bookings.c.end > window.start) & (bookings.c.start < window.end)


class LeaseRepository(Repository):
    """Leases and their bookings. ``Booking.slice_id`` holds the slice's database id."""

    def lock_hosts(self, node_ids: Iterable[str]) -> None:
        """Hold the rows of ``node_ids`` until the transaction ends, in id order (PostgreSQL;
        SQLite's write transactions are exclusive already)."""
        ids = sorted(set(node_ids))
        for start in range(0, len(ids), LOCK_CHUNK):  # a statement takes at most 65535 values
            chunk = ids[start:start + LOCK_CHUNK]
            query = select(nodes.c.id).where(nodes.c.id.in_(chunk)).order_by(nodes.c.id)
            self.connection.execute(query.with_for_update()).all()

    def lock_slice(self, slice_id: int) -> None:
        """Hold the slice's row until the transaction ends, so that the slice's bookings are
        checked and written by one transaction at a time (PostgreSQL; ``FOR NO KEY UPDATE``
        leaves inserts that only reference the row free)."""
        query = select(slices.c.id).where(slices.c.id == slice_id)
        self.connection.execute(query.with_for_update(key_share=True)).all()

    def add(self, lease: LeaseRow, items: Iterable[Booking]) -> None:
        self.connection.execute(leases.insert().values(
            id=lease.id, slice_id=lease.slice_id, start=lease.window.start,
            end=lease.window.end, state=lease.state, provision=lease.provision,
            created=lease.created))
        rows = [_booking_values(b) for b in items]
        if rows:
            self.connection.execute(bookings.insert(), rows)

    def add_many(self, items: Sequence[tuple[LeaseRow, Sequence[Booking]]]) -> None:
        """Insert several leases with their bookings (group commit of concurrent placements):
        one statement per table, the rows as one JSON parameter (:mod:`.bulk`); on
        PostgreSQL both tables in one statement (one round trip)."""
        if not items:
            return
        times = Times(self.connection.dialect.name)
        lease_rows = [_lease_row(lease, times) for lease, _ in items]
        booking_rows = [_booking_row(b, times) for _, group in items for b in group]
        if booking_rows and self.connection.dialect.name == "postgresql":
            self.connection.exec_driver_sql(_pg_leases_bookings(), (
                pg_rows_json(LEASE_COLUMNS, lease_rows),
                pg_rows_json(BOOKING_COLUMNS, booking_rows)))
            return
        insert_rows(self.connection, leases, LEASE_COLUMNS, lease_rows)
        insert_rows(self.connection, bookings, BOOKING_COLUMNS, booking_rows)

    def get(self, lease_id: str) -> LeaseRow:
        row = self.connection.execute(_lease_query().where(leases.c.id == lease_id)).first()
        if row is None:
            raise NotFound(f"no lease {lease_id!r}", field="lease_id")
        return _lease(row)

    def of_slice(self, slice_id: int, *, active_only: bool = True) -> list[LeaseRow]:
        query = _lease_query().where(leases.c.slice_id == slice_id)
        if active_only:
            query = query.where(leases.c.state == ACTIVE)
        return [_lease(r) for r in self.connection.execute(query)]

    def active(self) -> list[LeaseRow]:
        query = _lease_query().where(leases.c.state == ACTIVE)
        return [_lease(r) for r in self.connection.execute(query)]

    def bookings_of(self, lease_ids: Collection[str]) -> list[Booking]:
        if not lease_ids:
            return []
        query = _booking_query().where(bookings.c.lease_id.in_(list(lease_ids)))
        return [_booking(r) for r in self.connection.execute(query)]

    def overlapping(self, window: Window, *, node_ids: Collection[str] | None = None,
                    project_id: int | None = None,
                    slice_id: int | None = None) -> list[Booking]:
        """The active bookings that overlap ``window`` (on ``node_ids`` / of one project / of
        one slice)."""
        query = _booking_query().where(_overlapping(window), leases.c.state == ACTIVE)
        if slice_id is not None:
            query = query.where(leases.c.slice_id == slice_id)
        if node_ids is not None:
            query = query.where(bookings.c.node_id.in_(sorted(node_ids)))
        if project_id is not None:
            query = query.join(slices, slices.c.id == leases.c.slice_id).where(
                slices.c.project_id == project_id)
        return [_booking(r) for r in self.connection.execute(query)]

    def set_end(self, lease_id: str, end: datetime) -> None:
        self.connection.execute(update(leases).where(leases.c.id == lease_id).values(end=end))
        self.connection.execute(update(bookings).where(bookings.c.lease_id == lease_id)
                                .values(end=end))

    def set_provision(self, lease_id: str) -> None:
        self.connection.execute(update(leases).where(leases.c.id == lease_id)
                                .values(provision=True))

    def end(self, lease_id: str) -> None:
        """The lease no longer holds anything: its bookings go, the row stays as history."""
        self.connection.execute(delete(bookings).where(bookings.c.lease_id == lease_id))
        self.connection.execute(update(leases).where(leases.c.id == lease_id)
                                .values(state=ENDED))

    def release_slivers(self, sliver_ids: Collection[str]) -> list[str]:
        """Drop the bookings of ``sliver_ids``; end the leases left empty; return those."""
        if not sliver_ids:
            return []
        query = select(bookings.c.lease_id).where(bookings.c.sliver_id.in_(list(sliver_ids)))
        touched = {r.lease_id for r in self.connection.execute(query)}
        self.connection.execute(delete(bookings)
                                .where(bookings.c.sliver_id.in_(list(sliver_ids))))
        emptied = []
        for lease_id in sorted(touched):
            left = select(bookings.c.id).where(bookings.c.lease_id == lease_id).limit(1)
            if self.connection.execute(left).first() is None:
                self.end(lease_id)
                emptied.append(lease_id)
        return emptied

    def stale_commands(self, before: datetime) -> list[str]:
        """Ids of relayed commands still unanswered that were queued before ``before``."""
        query = (select(node_commands.c.id)
                 .where(node_commands.c.finished.is_(None), node_commands.c.created < before)
                 .order_by(node_commands.c.id))
        return [r.id for r in self.connection.execute(query)]

    def sliver_leases(self, sliver_ids: Collection[str]) -> dict[str, str]:
        """Sliver id -> lease id."""
        if not sliver_ids:
            return {}
        query = select(bookings.c.sliver_id, bookings.c.lease_id).where(
            bookings.c.sliver_id.in_(list(sliver_ids)))
        return {r.sliver_id: r.lease_id for r in self.connection.execute(query)}


LEASE_COLUMNS = ("id", "slice_id", "start", "end", "state", "provision", "created")
BOOKING_COLUMNS = ("lease_id", "node_id", "sliver_id", "start", "end", "cpu_milli",
                   "memory_mib", "disk_gib", "bandwidth_mbps", "devices", "exclusive",
                   "uplink_mbps")


def _lease_row(lease: LeaseRow, times: Times) -> list[Any]:
    return [lease.id, lease.slice_id, times(lease.window.start), times(lease.window.end),
            lease.state, lease.provision, times(lease.created)]


def _booking_row(b: Booking, times: Times) -> list[Any]:
    r = b.resources
    return [b.lease_id, b.host_id, b.sliver, times(b.window.start), times(b.window.end),
            r.cpu_milli, r.memory_mib, r.disk_gib, r.bandwidth_mbps, r.devices, b.exclusive,
            b.uplink_mbps]


@cache
def _pg_leases_bookings() -> str:
    """Leases and their bookings in one statement (the bookings' foreign keys are checked
    at its end, when the leases are there)."""
    return (f"WITH added AS ({insert_sql(leases, LEASE_COLUMNS, 'postgresql')}) "
            f"{insert_sql(bookings, BOOKING_COLUMNS, 'postgresql')}")


def _booking_values(b: Booking) -> dict[str, Any]:
    r = b.resources
    return {"lease_id": b.lease_id, "node_id": b.host_id, "sliver_id": b.sliver,
            "start": b.window.start, "end": b.window.end, "cpu_milli": r.cpu_milli,
            "memory_mib": r.memory_mib, "disk_gib": r.disk_gib,
            "bandwidth_mbps": r.bandwidth_mbps, "devices": [list(d) for d in r.devices],
            "exclusive": b.exclusive, "uplink_mbps": b.uplink_mbps}


def _span(seconds: int | None) -> timedelta | None:
    return None if seconds is None else timedelta(seconds=seconds)


def _seconds(span: timedelta | None) -> int | None:
    return None if span is None else int(span.total_seconds())


def _project_id(connection: Connection, name: str) -> int:
    found = connection.execute(select(projects.c.id).where(projects.c.name == name)).first()
    if found is None:
        raise NotFound(f"no project {name!r}", field="project")
    return int(found.id)


def _site_id(connection: Connection, name: str) -> int:
    found = connection.execute(select(sites.c.id).where(sites.c.name == name)).first()
    if found is None:
        raise NotFound(f"no site {name!r}", field="site")
    return int(found.id)


def _upsert(connection: Connection, table: Table, key: str, key_value: int,
            values: dict[str, Any]) -> None:
    done = connection.execute(update(table).where(table.c[key] == key_value).values(**values))
    if done.rowcount == 0:
        connection.execute(table.insert().values(**{key: key_value}, **values))


class QuotaRepository(Repository):
    """Per-project quotas; a project without a row has no limits."""

    def get(self, project: str) -> ProjectQuota:
        """The project's quota (one query: the project, and its quota row if it has one)."""
        query = (select(projects.c.id, project_quotas)
                 .outerjoin(project_quotas, project_quotas.c.project_id == projects.c.id)
                 .where(projects.c.name == project))
        row = self.connection.execute(query).first()
        if row is None:
            raise NotFound(f"no project {project!r}", field="project")
        if row.project_id is None:
            return ProjectQuota()
        return ProjectQuota(row.cores, row.memory_mib, row.slivers, row.concurrent_leases,
                            _span(row.longest_lease_s), _span(row.book_ahead_s))

    def put(self, project: str, quota: ProjectQuota) -> None:
        values = {"cores": quota.cores, "memory_mib": quota.memory_mib,
                  "slivers": quota.slivers, "concurrent_leases": quota.concurrent_leases,
                  "longest_lease_s": _seconds(quota.longest_lease),
                  "book_ahead_s": _seconds(quota.book_ahead)}
        pid = _project_id(self.connection, project)
        _upsert(self.connection, project_quotas, "project_id", pid, values)

    def project_id(self, project: str) -> int:
        return _project_id(self.connection, project)

    def lock(self, project_id: int) -> None:
        """Hold the project's row until the transaction ends (PostgreSQL): the project's
        holdings stay as read while a booking checks them against its quota."""
        query = select(projects.c.id).where(projects.c.id == project_id)
        self.connection.execute(query.with_for_update(key_share=True)).all()


@dataclass(frozen=True, slots=True)
class SitePolicy:
    limits: SiteLimits
    one_sliver_per_slice_per_node: bool = False


class SiteLimitRepository(Repository):
    """Per-site limits; a site without a row has none."""

    def get(self, site: str) -> SitePolicy:
        sid = _site_id(self.connection, site)
        row = self.connection.execute(select(site_limits)
                                      .where(site_limits.c.site_id == sid)).first()
        return _policy(row) if row is not None else SitePolicy(SiteLimits())

    def all(self) -> dict[str, SitePolicy]:
        query = select(site_limits, sites.c.name).join(sites, sites.c.id == site_limits.c.site_id)
        return {r.name: _policy(r) for r in self.connection.execute(query)}

    def put(self, site: str, policy: SitePolicy) -> None:
        limits = policy.limits
        values = {"slivers_per_slice": limits.slivers_per_slice,
                  "cores_per_sliver": limits.cores_per_sliver,
                  "memory_mib_per_sliver": limits.memory_mib_per_sliver,
                  "longest_lease_s": _seconds(limits.longest_lease),
                  "book_ahead_s": _seconds(limits.book_ahead),
                  "one_sliver_per_slice_per_node": policy.one_sliver_per_slice_per_node}
        _upsert(self.connection, site_limits, "site_id", _site_id(self.connection, site), values)


def _policy(row: Any) -> SitePolicy:
    limits = SiteLimits(row.slivers_per_slice, row.cores_per_sliver, row.memory_mib_per_sliver,
                        _span(row.longest_lease_s), _span(row.book_ahead_s))
    return SitePolicy(limits, bool(row.one_sliver_per_slice_per_node))


NODE_CHANGED = "n"  # booking_changes.kind: the node itself changed (or a site's limits:
# node_id "site:<id>")
LINK_CHANGED = "l"  # a link was added or removed (node_id holds the link's id)
BOOKINGS_CHANGED = "b"  # the node's bookings changed
POLICY_CHANGED = "p"  # a project's quota was set (node_id "quota:<project id>")


@dataclass(frozen=True, slots=True)
class Change:
    id: int
    node_id: str
    kind: str


class ChangeLog(Repository):
    """The booking change log (migration ``0005``): triggers write a row, under the epoch
    lock, for every change to a node's bookings or to the node itself. Its hot statements
    are sent as driver SQL (no compilation or bind processing)."""

    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._postgres = connection.dialect.name == "postgresql"

    def lock(self) -> int:
        """Take the booking lock until the transaction ends (PostgreSQL; SQLite's write
        transactions are exclusive); return the highest change id pruned so far. Every writer
        of bookings takes it before any other lock, so writers never deadlock on it."""
        sql = _PG_LOCK if self._postgres else _SQLITE_LOCK
        return int(self.connection.exec_driver_sql(sql).scalar_one())

    def since(self, after: int) -> list[Change]:
        sql = _PG_SINCE if self._postgres else _SQLITE_SINCE
        return [Change(*r) for r in self.connection.exec_driver_sql(sql, (after,))]

    def lock_since(self, after: int) -> tuple[int, list[Change]]:
        """:meth:`lock`, then :meth:`since` ``after`` (which sees every change committed
        before the lock was granted): one round trip on PostgreSQL."""
        if not self._postgres:
            return self.lock(), self.since(after)
        pruned, changes = pipelined(self.connection, [(_PG_LOCK, ()), (_PG_SINCE, (after,))])
        return int(pruned[0][0]), [Change(*r) for r in changes]

    def last(self) -> int:
        return int(self.connection.exec_driver_sql(_LAST).scalar_one())

    def prune(self, *, keep: int) -> int:
        """Forget all but the newest ``keep`` changes (with the lock held); return how many
        went. A reader behind the pruned point reloads everything."""
        upto = self.last() - keep
        if upto <= 0:
            return 0
        done = self.connection.execute(delete(booking_changes)
                                       .where(booking_changes.c.id <= upto))
        self.connection.execute(update(booking_epoch).where(booking_epoch.c.id == 1)
                                .values(pruned=upto))
        return int(done.rowcount or 0)


_SQLITE_LOCK = "SELECT pruned FROM booking_epoch WHERE id = 1"
_PG_LOCK = _SQLITE_LOCK + " FOR UPDATE"
_SQLITE_SINCE = "SELECT id, node_id, kind FROM booking_changes WHERE id > ? ORDER BY id"
_PG_SINCE = _SQLITE_SINCE.replace("?", "%s")
_LAST = "SELECT coalesce(max(id), 0) FROM booking_changes"


class LeaseStore:
    """The lease, quota and site-limit repositories on one connection (a unit of work's)."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.changes = ChangeLog(connection)
        self.leases = LeaseRepository(connection)
        self.quotas = QuotaRepository(connection)
        self.site_limits = SiteLimitRepository(connection)

    def write_batch(self, *, slivers: Sequence[SliverRow], links: Sequence[LinkRow],
                    leases: Sequence[tuple[LeaseRow, Sequence[Booking]]],
                    free: Sequence[CapacityRow], created: datetime,
                    unchanged_since: int | None = None, commit: bool = False) -> int:
        """Write what an allocation batch made (with the booking lock held): new slivers
        (``created`` then) and links, leases with their bookings, what is free of the hosts
        touched; return the change log's last id after them (its own changes included). As
        the repositories' ``add_many`` and ``set_free`` would, but on PostgreSQL in one
        round trip (a pipeline of one statement per table). A sliver or link that exists
        already raises :class:`Conflict`.

        ``unchanged_since``: take the booking lock first and write nothing, raising
        :class:`BookingsChanged`, when the change log holds a change after that one (or was
        pruned past it). ``commit``: on PostgreSQL, end the transaction with the writes, in
        the same round trip (the unit of work's commit that must follow then costs none);
        on SQLite the unit of work commits as usual."""
        if self.connection.dialect.name != "postgresql":
            if unchanged_since is not None:
                self._check_unchanged(unchanged_since)
            SliverRepository(self.connection).add_many(slivers, created=created)
            LinkRepository(self.connection).add_many(links)
            self.leases.add_many(leases)
            InventoryRepository(self.connection).set_free(free)
            return self.changes.last()
        first = [] if unchanged_since is None else [(_PG_UNCHANGED, (unchanged_since,))]
        try:
            done = pipelined(self.connection, [
                *first, *_replan(self.connection, len(leases)),
                *_pg_batch(slivers, links, leases, free, created), (_LAST, ()),
                *([("COMMIT", ())] if commit else [])])
        except psycopg.errors.UniqueViolation as exc:
            raise _conflict(exc, slivers, links) from None
        except psycopg.Error as exc:
            if exc.sqlstate == _CHANGED:
                raise BookingsChanged(f"bookings changed after change {unchanged_since}") \
                    from None
            raise
        return int(done[-2 if commit else -1][0][0])

    def _check_unchanged(self, after: int) -> None:
        pruned, changes = self.changes.lock_since(after)
        if changes or pruned > after:
            raise BookingsChanged(f"bookings changed after change {after}")


class BookingsChanged(Conflict):
    """Raised by :meth:`LeaseStore.write_batch` given ``unchanged_since`` when another writer
    changed bookings after that change; nothing was written (the allocation engine places
    the batch again)."""


_PG_UNCHANGED = "SELECT slicelab_lock_unchanged(%s)"  # migration 0008
_CHANGED = "SL409"  # the SQLSTATE it raises


_REPLAN_FROM, _REPLAN_EVERY = 64, 1024  # leases written by this process (see _replan)
_written = [0]  # leases written by this process through write_batch (PostgreSQL)


def _replan(connection: Connection, leases: int) -> list[tuple[str, Any]]:
    """``DISCARD PLANS`` on this connection when the leases this process wrote since it last
    did reach as many as it had written then (at least 64, at most 1,024). The server keeps
    its plan of each foreign-key check for the life of a connection, until the table is
    analyzed again: made while the table was small, it is a sequential scan. On a fresh
    aggregate taking hundreds of allocations a second, autovacuum's next ANALYZE (a minute
    or more away) came after thousands of leases, and checking each booking against
    ``leases`` scanned them all (half the writes' time in the server). Planned again, the
    checks use the index (the planner counts the table's pages as they are now)."""
    _written[0] += leases
    info, total = connection.info, _written[0]
    last = info.get("slicelab_planned_at")
    if last is not None and total - last < min(_REPLAN_EVERY, max(_REPLAN_FROM, last)):
        return []
    info["slicelab_planned_at"] = total
    return [("DISCARD PLANS", ())]


def _pg_batch(slivers: Sequence[SliverRow], links: Sequence[LinkRow],
              leases: Sequence[tuple[LeaseRow, Sequence[Booking]]],
              free: Sequence[CapacityRow], created: datetime) -> list[tuple[str, Any]]:
    """The statements of :meth:`LeaseStore.write_batch` on PostgreSQL (none for no rows)."""
    times, pg = Times("postgresql"), "postgresql"
    work: list[tuple[str, Any]] = []
    if slivers:
        work.append((insert_sql(sliver_table, SLIVER_COLUMNS, pg), (pg_rows_json(
            SLIVER_COLUMNS, sliver_values(slivers, times(created))),)))
    if links:
        work.append((insert_sql(slice_links, LINK_COLUMNS, pg),
                     (pg_rows_json(LINK_COLUMNS, link_values(links)),)))
    booked = [_booking_row(b, times) for _, group in leases for b in group]
    lease_rows = pg_rows_json(LEASE_COLUMNS, [_lease_row(lease, times) for lease, _ in leases])
    if booked:
        work.append((_pg_leases_bookings(),
                     (lease_rows, pg_rows_json(BOOKING_COLUMNS, booked))))
    elif leases:
        work.append((insert_sql(leases_table, LEASE_COLUMNS, pg), (lease_rows,)))
    if free:
        work.append(pg_set_free(free))
    return work


def _conflict(exc: psycopg.errors.UniqueViolation, slivers: Sequence[SliverRow],
              links: Sequence[LinkRow]) -> Conflict:
    if exc.diag.table_name == "slice_links" and links:
        return Conflict(f"link {links[0].client_id!r} exists already", field="links")
    what = repr(slivers[0].client_id) if slivers else "id"
    return Conflict(f"sliver {what} exists already", field="client_id")
