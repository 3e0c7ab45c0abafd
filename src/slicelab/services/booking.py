"""The allocation engine: every placement of this process, batched, on an in-memory snapshot.

Each server process has one :class:`AllocationEngine` per database (:func:`engine_for`). A
caller hands it a *job* (a function of one :class:`Batch`, e.g. "write this topology for
this slice") and waits; the engine's thread takes every job waiting and runs them all in one
transaction:

1. it takes the booking lock (:meth:`~slicelab.store.leases.ChangeLog.lock`), which every
   writer of bookings in every process takes first, and reads the change log written by the
   database's triggers since its last batch (both in one round trip): the hosts whose
   bookings another process (or a renewal, release, sweep or delete) changed are reloaded
   into the snapshot, and a change to a node itself (added, removed, boot state, inventory)
   reloads the whole snapshot;
2. each job runs in a savepoint; when it books (:meth:`Batch.book`) it is placed on the
   snapshot (inventory, calendar and host index in memory), checked against the project's
   quota and the sites' limits with the bookings of the jobs before it in the batch counted
   in, and its lease and bookings are queued; a job that fails is rolled back alone (its
   bookings taken out of the snapshot) and its caller gets the error with its diagnosis;
3. the batch's sliver, link, lease and booking rows and the free-node index rows of every
   host touched are written in one go (:meth:`~slicelab.store.leases.LeaseStore.write_batch`:
   one statement per table, on PostgreSQL all in one round trip), and the batch commits.

Because the lock is held from the change-log read to the commit, the snapshot is exact while
the jobs place: any number of server processes may share one database. When a batch fails as
a whole, the snapshot is dropped (reloaded by the next batch) and its jobs run again one by
one. Quotas and site limits read are kept across batches until the change log says one was
set.

**Placed ahead (PostgreSQL).** Step 3's writes and the commit are the writer thread's: while
it writes one batch, the engine's thread places the next on the snapshot, which holds the
bookings of the batches being written, without the lock (reads of the slices' slivers and of
the project's holdings add those batches' rows, which the database may not show yet). The
writer writes the batches waiting for it together, in one round trip: the lock, a check that
the change log holds nothing since its last commit, the writes and the commit (a failed check
aborts the rest, see :meth:`~slicelab.store.leases.LeaseStore.write_batch`). Otherwise
another writer came between: those batches are taken back out of the snapshot, newest first,
and run again in order as above (under the lock from the start, catching up first). Only jobs
that write through the batch alone (allocations) are placed ahead; a batch with any other job,
or one taken when nothing is being written, runs as above. On SQLite the writes run in this
process and batches run as above, one at a time.
"""

from __future__ import annotations

import gc
import logging
import queue
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any, Generic, TypeVar

from sqlalchemy import Engine

from slicelab.domain.calendar import ALL_TIME, Booking, Calendar, Window
from slicelab.domain.errors import InsufficientResources, InvalidInput, Unavailable
from slicelab.domain.inventory import Host, Inventory, Site, SiteLimits
from slicelab.domain.placement import HostIndex, Placement, place
from slicelab.domain.projects import Project
from slicelab.domain.quotas import Demand, ProjectQuota
from slicelab.domain.resources import Resources
from slicelab.domain.slices import Slice
from slicelab.domain.topology import Topology
from slicelab.services.ids import new_id
from slicelab.store.aggregate import LinkRow, SliverRow
from slicelab.store.allocation_reads import read_for_allocation
from slicelab.store.inventory import CapacityRow
from slicelab.store.leases import (
    ACTIVE,
    BOOKINGS_CHANGED,
    NODE_CHANGED,
    BookingsChanged,
    LeaseRow,
)
from slicelab.store.uow import UnitOfWork, UnitOfWorkFactory, read_only, unit_of_work_factory

from .audit import utcnow
from .leases import HARDWARE_TYPES, booking_rules, check_rules

__all__ = ["LINKS", "PORTS", "AllocationEngine", "Batch", "Reply", "TakenPorts", "Timings",
           "engine_for", "stop_engines"]

log = logging.getLogger(__name__)
T = TypeVar("T")
Job = Callable[["Batch"], T]
MAX_BATCH = 256
FREEZE_AT = 10_000  # hosts: a snapshot this large is kept out of the collector's scans
YOUNG_COLLECTION = 10_000  # new objects between the collector's young collections
AHEAD = 2  # batches in flight at most while the next is placed (the writer writes those
# waiting for it together: a write costs about the same whatever its size)
EXPIRE_EVERY = timedelta(minutes=1)  # how often ended leases leave the snapshot
LINKS = "links"  # Batch.kept: the VNIs and subnets taken (see services.topology_apply)
QUOTAS = "quotas"  # Batch.kept: project name -> ProjectQuota, as read
LIMITS = "limits"  # Batch.kept: site name -> SiteLimits, as read
PORTS = "ports"  # Batch.kept: the control ports taken (TakenPorts); a host's entry is read
# again when its bookings change by another writer (every writer of slivers changes bookings)


@dataclass(slots=True)
class _Snapshot:
    """Inventory, calendar and host index keyed by node *name* (so that ties between equal
    hosts break by name, which people read); everything outside speaks node ids."""

    inventory: Inventory
    calendar: Calendar
    index: HostIndex
    names: Mapping[str, str]  # node id -> name
    ids: Mapping[str, str]  # name -> node id
    site_ids: Mapping[str, int]
    cursor: int  # the last change already in the snapshot
    expired: datetime

    def to_name(self, b: Booking) -> Booking:
        return replace(b, host_id=self.names[b.host_id])


def _load(uow: UnitOfWork, now: datetime) -> _Snapshot:
    """Everything, read under the booking lock."""
    cursor = uow.leases.changes.last()
    nodes = uow.aggregate.nodes.list()
    hosts = [Host(id=n.name, name=n.name, site=n.site, capacity=n.capacity(),
                  available=n.accepts_slivers, urn=str(n.urn),
                  hardware_types=frozenset(HARDWARE_TYPES)) for n in nodes]
    sites = [Site(name, p.one_sliver_per_slice_per_node, p.limits)
             for name, p in uow.leases.site_limits.all().items()]
    inventory = Inventory(hosts, sites)
    names = {n.id: n.name for n in nodes}
    found = uow.leases.leases.overlapping(Window(now, ALL_TIME.end))
    calendar = Calendar(inventory, [replace(b, host_id=names[b.host_id]) for b in found
                                    if b.host_id in names])
    return _Snapshot(inventory, calendar, HostIndex(inventory, calendar), names,
                     {n.name: n.id for n in nodes}, uow.inventory.site_ids(), cursor, now)


@dataclass(slots=True)
class TakenPorts:
    """The first control ports of the slivers on each host: every host's read at once when
    first wanted, then kept; a host another writer changed is read again when wanted."""

    by_host: dict[str, set[int]] = field(default_factory=dict)
    stale: set[str] = field(default_factory=set)
    loaded: bool = False

    def forget(self, node_id: str) -> None:
        self.by_host.pop(node_id, None)
        self.stale.add(node_id)

    def to_read(self, hosts: set[str]) -> set[str]:
        """Which of ``hosts`` must be read (all of them until :attr:`loaded`)."""
        return hosts & self.stale if self.loaded else hosts

    def read(self, hosts: set[str] | None, found: Iterable[tuple[str, int]]) -> None:
        """Take what the database holds for ``hosts`` (None: every host)."""
        if hosts is None:
            self.by_host, self.stale, self.loaded = {}, set(), True
        else:
            for host in hosts:
                self.by_host[host] = set()
            self.stale -= hosts
        for node_id, port in found:
            self.by_host.setdefault(node_id, set()).add(port)

    def on(self, host: str) -> set[int]:
        return self.by_host.setdefault(host, set())


@dataclass(slots=True)
class Timings:
    """Seconds the engine's batches spent in each part, summed over its batches."""

    catch_up: float = 0.0  # booking lock, change log, snapshot refresh, slivers read
    placing: float = 0.0  # the jobs: placement, checks, sliver plans, links, ports
    writes: float = 0.0  # slivers, links, leases, bookings, the free-node index: one write
    commit: float = 0.0

    def parts(self) -> dict[str, float]:
        return {"catch_up": self.catch_up, "placing": self.placing,
                "writes": self.writes, "commit": self.commit}


@dataclass(slots=True)
class _Pending:
    lease: LeaseRow
    bookings: tuple[Booking, ...]


@dataclass(slots=True)
class _Rows:
    slivers: list[SliverRow]
    links: list[LinkRow]
    leases: list[tuple[LeaseRow, tuple[Booking, ...]]]
    free: list[CapacityRow]

    @staticmethod
    def of(parts: Sequence[_Rows]) -> _Rows:
        """Several batches' rows as one write (a host's free row: the latest batch's)."""
        if len(parts) == 1:
            return parts[0]
        free = {row.node_id: row for part in parts for row in part.free}
        return _Rows([r for p in parts for r in p.slivers], [r for p in parts for r in p.links],
                     [r for p in parts for r in p.leases], list(free.values()))


@dataclass(slots=True)
class _InFlight:
    """A batch handed to the writer thread, until it has committed (or failed)."""

    requests: list[_Request]
    pending: dict[str, _Pending]
    slivers: dict[int, list[SliverRow]]
    batch: Batch


class _Again(Exception):
    """The writer did not write a batch placed ahead: another writer changed bookings since
    the batch before (or a batch before it was not written)."""


class _Wake:
    """Put in the engine's queue by the writer thread when a batch was not written."""


@dataclass(slots=True)
class Batch:
    """One transaction of the engine; jobs read and write through :attr:`uow` and book
    through :meth:`book`."""

    uow: UnitOfWork
    now: datetime
    _snap: _Snapshot
    memo: dict[str, Any] = field(default_factory=dict)  # what a batch's jobs share
    kept: dict[str, Any] = field(default_factory=dict)  # shared across batches until a link
    # is added or removed by a writer other than this engine (see the change log)
    _pending: dict[str, _Pending] = field(default_factory=dict)
    _touched: set[str] = field(default_factory=set)
    _job_leases: list[str] = field(default_factory=list)
    _own_changes: bool = False
    _slivers: dict[int, list[SliverRow]] = field(default_factory=dict)  # by slice, read once
    _projects: dict[str, Project | None] = field(default_factory=dict)  # read once per batch
    _named: dict[tuple[str, str], Slice | None] = field(default_factory=dict)
    _deferred: list[SliverRow | LinkRow] = field(default_factory=list)
    _job_deferred: int = 0
    _job_undo: list[Callable[[], None]] = field(default_factory=list)
    _savepoints: bool = False  # a job ran in a savepoint (it may have written anything)
    inflight: tuple[_InFlight, ...] = ()  # the batches being written meanwhile
    _done: list[tuple[list[str], list[Callable[[], None]]]] = field(default_factory=list)

    def book(self, item: Slice, topology: Topology, window: Window, *,
             sliver_ids: Mapping[str, str], provision: bool = False
             ) -> tuple[LeaseRow, Placement]:
        """Place ``topology`` for ``window`` as a new lease of ``item`` (written when the
        batch commits); raise PlacementFailed with the diagnosis, or the rule broken."""
        if self._own_changes:
            self._follow_own_changes()
        snap, slice_id = self._snap, _slice_id(item)
        rules = booking_rules(self.uow, item, window, quota=self._quota(item.project),
                              limits=self._limits(), extra=self._pending_of(item),
                              site_of=_site_of(snap))
        check_rules(rules, item, Demand(item.project, str(slice_id), window, ()), now=self.now)
        placement = place(topology, snap.index, snap.calendar, window, slice_id=str(slice_id))
        check_rules(rules, item, Demand.of(placement, project=item.project,
                                           inventory=snap.inventory), now=self.now)
        lease = LeaseRow(new_id("L-"), slice_id, item.project, item.name,
                         window, ACTIVE, provision, self.now)
        booked, stored = _bookings(placement, lease.id, sliver_ids, snap.ids)
        snap.calendar.book(booked, now=min(self.now, window.start))
        self._pending[lease.id] = _Pending(lease, stored)
        self._job_leases.append(lease.id)
        self._touched.update(b.host_id for b in stored)
        return lease, placement.on_hosts(snap.ids)

    def slivers_of(self, slice_id: int) -> list[SliverRow]:
        """The slice's slivers, with those this batch will write (read once per batch for
        the slices its jobs named, see :meth:`AllocationEngine.submit`)."""
        if slice_id not in self._slivers:
            self._slivers[slice_id] = self._with_inflight(
                slice_id, self.uow.aggregate.slivers.of_slice(slice_id))
        return list(self._slivers[slice_id])

    def project_named(self, name: str) -> Project | None:
        """Project ``name`` with its memberships (only those), or None (read for the whole
        batch at once for the slices its jobs named, see :meth:`AllocationEngine.submit`)."""
        if name not in self._projects:
            self._projects[name] = self.uow.projects.find(name)
        return self._projects[name]

    def slice_named(self, project: str, name: str) -> Slice | None:
        """Slice ``project/name`` with its members, or None (read as :meth:`project_named`)."""
        key = (project, name)
        if key not in self._named:
            self._named[key] = self.uow.slices.find(project, name)
        return self._named[key]

    def node_name(self, node_id: str) -> str:
        """The name of node ``node_id`` (from the snapshot)."""
        return self._snap.names.get(node_id, node_id)

    def defer(self, rows: Iterable[SliverRow | LinkRow]) -> None:
        """Insert new sliver and link rows when the batch commits (one statement per table
        for the whole batch). Only for jobs submitted without a savepoint, which write
        nothing else."""
        for row in rows:
            self._deferred.append(row)
            if isinstance(row, SliverRow):
                self._slivers.setdefault(row.slice_id, []).append(row)

    def on_undo(self, action: Callable[[], None]) -> None:
        """Run ``action`` if the job fails (to take back what it kept in :attr:`kept`)."""
        self._job_undo.append(action)

    def note_changes(self) -> None:
        """Say that the job changed bookings itself (released slivers, ended a lease): the
        next :meth:`book` reads them into the snapshot first. A job that changes bookings
        must call it before it books again."""
        self._own_changes = True

    def _quota(self, project: str) -> ProjectQuota:
        """The project's quota: kept across batches until one is set (the change log says)."""
        quotas = self.kept.setdefault(QUOTAS, {})
        if project not in quotas:
            quotas[project] = self.uow.leases.quotas.get(project)
        quota: ProjectQuota = quotas[project]
        return quota

    def _limits(self) -> Mapping[str, SiteLimits]:
        """The sites' limits: kept across batches until one is set (the change log says)."""
        if LIMITS not in self.kept:
            self.kept[LIMITS] = {name: p.limits
                                 for name, p in self.uow.leases.site_limits.all().items()}
        limits: Mapping[str, SiteLimits] = self.kept[LIMITS]
        return limits

    def _pending_of(self, item: Slice) -> Iterator[tuple[str, Booking]]:
        """The bookings not committed yet: this batch's, and those of the batches being
        written."""
        for pending in (self._pending, *(f.pending for f in self.inflight)):
            for p in pending.values():
                for b in p.bookings:
                    yield p.lease.project, b

    def _follow_own_changes(self) -> None:
        """Take into the snapshot what this transaction changed itself (a job releasing
        slivers before it books); the bookings queued are not in the database yet."""
        self._own_changes = False
        changes = self.uow.leases.changes.since(self._snap.cursor)
        if changes:
            self._snap.cursor = changes[-1].id
            if any(c.kind == NODE_CHANGED for c in changes):
                raise _Reload("a node changed inside the batch")
            hosts = {c.node_id for c in changes if c.kind == BOOKINGS_CHANGED}
            _refresh(self.uow, self._snap, hosts, keep=self._pending)
            self._touched |= hosts

    # -- the engine's side -------------------------------------------------------------

    def _start_job(self) -> None:
        self._job_leases = []
        self._job_deferred = len(self._deferred)
        self._job_undo = []

    def _keep_job(self) -> None:
        self._done.append((self._job_leases, self._job_undo))
        self._job_leases, self._job_undo = [], []

    def _undo_all(self) -> None:
        """Take every job of the batch back out of the snapshot and what is kept (a batch
        placed ahead that must run again under the lock)."""
        self._undo_job()
        for leases, undo in reversed(self._done):
            self._job_leases, self._job_undo = leases, undo
            self._undo_job()
        self._done, self._deferred, self._touched = [], [], set()

    def _undo_job(self) -> None:
        for action in reversed(self._job_undo):
            action()
        self._job_undo = []
        for lease_id in self._job_leases:
            self._pending.pop(lease_id, None)
            self._snap.calendar.release(lease_id)
        self._job_leases = []
        undone = self._deferred[self._job_deferred:]
        del self._deferred[self._job_deferred:]
        for row in undone:
            if isinstance(row, SliverRow) and row in self._slivers.get(row.slice_id, ()):
                self._slivers[row.slice_id].remove(row)

    def _prefetch(self, keys: Iterable[tuple[str, str]], slice_ids: Iterable[int]) -> None:
        """Read the slices named, their projects and slivers, and the slivers of slices
        ``slice_ids``, for the whole batch (one round trip on PostgreSQL)."""
        keys = set(keys) - self._named.keys()
        ids = set(slice_ids) - self._slivers.keys()
        if not keys and not ids:
            return
        projects = {p for p, _ in keys} - self._projects.keys()
        found = read_for_allocation(self.uow.slices.connection, projects, keys, ids)
        self._projects.update({p: found.projects.get(p) for p in projects})
        self._named.update({k: found.slices.get(k) for k in keys})
        ids |= {s.id for s in found.slices.values() if s.id is not None}
        self._slivers.update({sid: self._with_inflight(sid, found.slivers.get(sid, []))
                              for sid in ids - self._slivers.keys()})

    def _with_inflight(self, slice_id: int, rows: list[SliverRow]) -> list[SliverRow]:
        """``rows`` read, with the slice's new slivers of the batches being written (which the
        read may or may not have seen, as they commit meanwhile)."""
        extra = [r for f in self.inflight for r in f.slivers.get(slice_id, ())]
        if not extra:
            return rows
        seen = {r.id for r in rows}
        return rows + [r for r in extra if r.id not in seen]

    def _write_deferred(self) -> None:
        rows, self._deferred = self._deferred, []
        self.uow.aggregate.slivers.add_many([r for r in rows if isinstance(r, SliverRow)],
                                            created=self.now)
        self.uow.aggregate.links.add_many([r for r in rows if isinstance(r, LinkRow)])

    def _flush(self, timings: Timings) -> None:
        if self._own_changes or self._savepoints:
            self._follow_own_changes()
        self._write(self._to_write(), timings)

    def _to_write(self) -> _Rows:
        """What the batch writes, taken from it (the free-node index read from the snapshot
        now: a batch placed ahead is written while the next one changes the snapshot)."""
        rows, self._deferred = self._deferred, []
        return _Rows([r for r in rows if isinstance(r, SliverRow)],
                     [r for r in rows if isinstance(r, LinkRow)],
                     [(p.lease, p.bookings) for p in self._pending.values()],
                     [_headroom(self._snap, h, self.now)
                      for h in sorted(self._touched) if h in self._snap.names])

    def _write(self, rows: _Rows, timings: Timings, *, commit: bool = False,
               unchanged_since: int | None = None) -> None:
        t0 = time.perf_counter()
        self._snap.cursor = self.uow.leases.write_batch(
            slivers=rows.slivers, links=rows.links, leases=rows.leases, free=rows.free,
            created=self.now, commit=commit, unchanged_since=unchanged_since)
        timings.writes += time.perf_counter() - t0


class _Reload(Exception):
    """The snapshot must be loaded again before the batch can go on."""


def _slice_id(item: Slice) -> int:
    assert item.id is not None, "a stored slice has an id"
    return item.id


def _site_of(snap: _Snapshot) -> Callable[[str], str | None]:
    def site(node_id: str) -> str | None:
        name = snap.names.get(node_id)
        return snap.inventory.host(name).site if name is not None else None
    return site


def _bookings(placement: Placement, lease_id: str, sliver_ids: Mapping[str, str],
              ids: Mapping[str, str]) -> tuple[tuple[Booking, ...], tuple[Booking, ...]]:
    """The placement's bookings with their slivers' ids: by host name (for the snapshot's
    calendar) and by node id (to store)."""
    booked, stored = [], []
    for b in placement.bookings(lease_id=lease_id):
        sliver = sliver_ids[b.sliver] if b.sliver is not None else None
        rest = (b.slice_id, b.window, b.resources, b.exclusive, b.uplink_mbps, sliver)
        booked.append(Booking(lease_id, b.host_id, *rest))
        stored.append(Booking(lease_id, ids[b.host_id], *rest))
    return tuple(booked), tuple(stored)


def _headroom(snap: _Snapshot, node_id: str, now: datetime) -> CapacityRow:
    host = snap.inventory.host(snap.names[node_id])
    usage = snap.calendar.peak(host.id, Window(now, ALL_TIME.end))
    free = Resources() if usage.exclusive else host.capacity - usage.resources
    return CapacityRow(node_id, snap.site_ids[host.site], host.available, host.capacity, free)


def _refresh(uow: UnitOfWork, snap: _Snapshot, hosts: Iterable[str], *,
             keep: Mapping[str, _Pending]) -> None:
    """Make the snapshot's bookings on ``hosts`` (node ids) what the database holds (plus the
    batch's queued ones): every lease on them, in the snapshot or in the database, is read
    again."""
    hosts = sorted(h for h in hosts if h in snap.names)
    if not hosts:
        return
    held = {b.lease_id for h in hosts for b in snap.calendar.bookings(snap.names[h])}
    found = uow.leases.leases.overlapping(Window(snap.expired, ALL_TIME.end), node_ids=hosts)
    lease_ids = (held | {b.lease_id for b in found}) - set(keep)
    for lease_id in lease_ids:
        snap.calendar.release(lease_id)
    groups: dict[str, list[Booking]] = {}
    for b in uow.leases.leases.bookings_of(sorted(lease_ids)):
        if b.host_id in snap.names:
            groups.setdefault(b.lease_id, []).append(snap.to_name(b))
    for group in groups.values():
        try:
            snap.calendar.book(group, now=group[0].window.start)
        except (InsufficientResources, InvalidInput) as exc:
            raise _Reload(str(exc)) from exc


# -- the engine -----------------------------------------------------------------------------

class Reply(Generic[T]):
    """What a job gave, or the error it raised, handed to the thread waiting for it: one lock
    held until then (lighter than a Future: no condition, no callbacks)."""

    __slots__ = ("_ready", "_value", "_error")

    def __init__(self) -> None:
        self._ready = threading.Lock()
        self._ready.acquire()
        self._value: T | None = None
        self._error: BaseException | None = None

    def give(self, value: T) -> None:
        self._value = value
        self._ready.release()

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._ready.release()

    def result(self, timeout: float | None = None) -> T:
        """The job's result (or its error raised here); Unavailable after ``timeout`` s."""
        if not self._ready.acquire(timeout=-1 if timeout is None else timeout):
            raise Unavailable("the allocation engine did not answer in time; try again")
        self._ready.release()  # for another call of result()
        if self._error is not None:
            raise self._error
        return self._value  # type: ignore[return-value]


@dataclass(slots=True)
class _Handed:
    """A batch for the writer thread: placed under the lock (``lock`` False), or placed ahead
    (the writer takes the lock and checks that no other writer came between)."""

    uow: UnitOfWork | None  # None: the writer begins one
    batch: Batch
    rows: _Rows
    requests: list[_Request]
    results: list[tuple[bool, Any]]
    lock: bool
    generation: int


@dataclass(slots=True)
class _Request:
    job: Job[Any]
    done: Reply[Any]
    slices: tuple[int, ...] = ()
    savepoint: bool = True
    named: tuple[tuple[str, str], ...] = ()


class AllocationEngine:
    """Runs allocation jobs in batches on one snapshot; see the module docstring."""

    def __init__(self, uow_factory: UnitOfWorkFactory, *,
                 clock: Callable[[], datetime] = utcnow, max_batch: int = MAX_BATCH,
                 pipeline: bool | None = None) -> None:
        if max_batch < 1:
            raise InvalidInput("a batch holds at least one job", field="max_batch")
        self._uow_factory, self._clock, self._max_batch = uow_factory, clock, max_batch
        self._queue: queue.SimpleQueue[_Request | _Wake | None] = queue.SimpleQueue()
        self._snap: _Snapshot | None = None
        self._kept: dict[str, Any] = {}
        self._frozen = False  # this engine froze the objects in the collector (see _reload)
        self._thread: threading.Thread | None = None
        self._pipeline = pipeline
        self._shared: bool | None = None  # PostgreSQL: see _ahead
        self._to_write: queue.SimpleQueue[_Handed | None] = queue.SimpleQueue()
        self._written: queue.SimpleQueue[Exception | None] = queue.SimpleQueue()
        self._inflight: deque[_InFlight] = deque()
        self._generation = 0  # of the batches handed; a failure starts the next one
        self._broken = -1  # the writer's: the generation whose batches it no longer writes
        self._cursor = 0  # the writer's: the change log's last id after its last commit
        self._writer: threading.Thread | None = None
        self._guard = threading.Lock()
        self.batches = 0
        self.jobs = 0
        self.ahead = 0  # batches placed ahead (written while the next one placed)
        self.again = 0  # batches placed ahead that ran again (another writer came between)
        self.timings = Timings()

    def start(self) -> None:
        with self._guard:
            if self._thread is None:
                collect_less_often()
                self._thread = threading.Thread(target=self._loop, name="allocation-engine",
                                                daemon=True)
                self._writer = threading.Thread(target=self._write_loop, daemon=True,
                                                name="allocation-writer")
                self._writer.start()
                self._thread.start()

    def stop(self) -> None:
        """Finish the jobs asked for, then end the thread."""
        with self._guard:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join()
            self._to_write.put(None)
            assert self._writer is not None
            self._writer.join()

    def submit(self, job: Job[T], *, slices: Iterable[int] = (), savepoint: bool = True,
               named: Iterable[tuple[str, str]] = ()) -> Reply[T]:
        """Queue ``job``. ``slices``: the slices whose slivers it reads; ``named``: the
        ``(project, slice)`` names it reads with :meth:`Batch.slice_named` (their slices,
        projects and slivers read for the whole batch at once). Without ``savepoint`` the job
        must write nothing but through :meth:`Batch.book` and :meth:`Batch.defer` (it then
        needs no savepoint of its own)."""
        if self._thread is None:
            raise Unavailable("the allocation engine is not running")
        done: Reply[T] = Reply()
        self._queue.put(_Request(job, done, tuple(slices), savepoint, tuple(named)))
        return done

    def run(self, job: Job[T], *, timeout: float | None = None, slices: Iterable[int] = (),
            savepoint: bool = True, named: Iterable[tuple[str, str]] = ()) -> T:
        """Run ``job`` in the next batch; its result, or its error."""
        return self.submit(job, slices=slices, savepoint=savepoint, named=named).result(timeout)

    def run_for(self, uow: UnitOfWork, job: Job[T], *, slices: Iterable[int] = (),
                savepoint: bool = True, named: Iterable[tuple[str, str]] = ()) -> T:
        """:meth:`run` for a caller inside a unit of work, which commits what it did so far
        and lets its connection go while it waits (see :meth:`UnitOfWork.idle`)."""
        with uow.idle():
            return self.run(job, slices=slices, savepoint=savepoint, named=named)

    def warm(self) -> None:
        """Load the snapshot now (else the first batch does)."""
        self.run(lambda batch: None)

    # -- the thread ----------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            batch, stop = self._take()
            while self._inflight and not self._written.empty():
                self._settle_one()  # written (or not) already: take the outcome
            if batch and self._ahead_ok(batch):
                self._ahead(batch)
            elif batch:
                self._settle()
                self._serve(batch)
            if stop:
                self._settle()
                return

    def _take(self) -> tuple[list[_Request], bool]:
        first = self._queue.get()
        if first is None:
            return [], True
        batch = [] if isinstance(first, _Wake) else [first]
        while len(batch) < self._max_batch:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return batch, True
            if not isinstance(item, _Wake):
                batch.append(item)
        return batch, False

    def _ahead_ok(self, requests: Sequence[_Request]) -> bool:
        """Whether ``requests`` may be placed ahead, while the batches before are written
        (else they run after them, under the lock from the start): a batch is being written,
        the jobs write only through the batch, the snapshot is loaded and current, and what
        is kept across batches was read already (read now, it would miss the batches in
        flight)."""
        snap, ports = self._snap, self._kept.get(PORTS)
        return (bool(self._inflight) and snap is not None and LINKS in self._kept
                and isinstance(ports, TakenPorts) and ports.loaded
                and self._clock() - snap.expired < EXPIRE_EVERY
                and not any(r.savepoint for r in requests))

    def _ahead(self, requests: list[_Request]) -> None:
        """Place ``requests`` while the batches before are written (reading without the
        booking lock) and hand them to the writer thread, which takes the lock and writes
        them only if no other writer changed bookings since the batch before; else they run
        again (see :meth:`_recover`). At most :data:`AHEAD` batches are in flight.

        On PostgreSQL the reads and the writes share one transaction (read committed: the
        lock, taken after the reads, sees every change committed before it); on SQLite the
        reads are a transaction of their own (a write transaction cannot follow a read
        snapshot older than the batches written meanwhile)."""
        while len(self._inflight) > AHEAD and self._settle_one():
            pass  # the oldest was written: room for this one
        if not self._inflight:  # none left being written (or they ran again): as usual
            self._serve(requests)
            return
        snap, now, t0 = self._snap, self._clock(), time.perf_counter()
        assert snap is not None
        shared = bool(self._shared)
        reader = self._uow_factory() if shared else read_only(self._uow_factory)
        batch = Batch(reader, now, snap, kept=self._kept, inflight=tuple(self._inflight))
        try:
            reader.__enter__()
            batch._prefetch([k for r in requests for k in r.named],
                            [sid for r in requests for sid in r.slices])
            t1 = time.perf_counter()
            results = [self._one(batch, r) for r in requests]
            if batch._own_changes:
                raise _Again("a job changed bookings itself")
            rows = batch._to_write()
            batch.inflight = ()  # placed: else each batch would keep every one before it
        except Exception as exc:  # run them again under the lock
            reader.__exit__(None, None, None)
            log.info("allocation batch placed ahead runs again: %s", exc)
            self.again += 1
            batch._undo_all()
            self._settle()
            self._serve(requests)
            return
        self.timings.catch_up += t1 - t0
        self.timings.placing += time.perf_counter() - t1
        if not shared:
            reader.__exit__(None, None, None)
        self._hand_over(_Handed(reader if shared else None, batch, rows, requests, results,
                                lock=True, generation=self._generation))

    def _settle(self) -> None:
        """Wait for every batch being written (running again those that were not)."""
        while self._inflight:
            self._settle_one()

    def _settle_one(self) -> bool:
        """Wait for the oldest batch being written; False when it was not (then it and the
        batches after it ran again, see :meth:`_recover`)."""
        head = self._inflight.popleft()
        outcome = self._written.get()
        if outcome is None:
            return True
        self._recover(head, outcome)
        return False

    def _recover(self, head: _InFlight, outcome: Exception) -> None:
        """The writer did not write ``head`` (nor, then, any batch handed after it): take
        them all out of the snapshot, newest first, and run them again in order under the
        lock, which catches up with the other writer first. When writing ``head`` failed
        (not just :class:`_Again`), the snapshot is dropped and its jobs run one by one, as
        a failed batch's do."""
        failed = [head, *self._inflight]
        self._inflight.clear()
        for _ in failed[1:]:
            self._written.get()  # not written either: the writer skips a broken generation
        self._generation += 1
        for f in reversed(failed):
            if self._snap is f.batch._snap:
                f.batch._undo_all()
        rest = failed
        if isinstance(outcome, _Again):
            self.again += len(failed)
            log.info("%d allocation batches run again: %s", len(failed), outcome)
        else:
            self._snap, rest = None, failed[1:]
            log.warning("allocation batch of %d failed (%s); running its jobs one by one",
                        len(head.requests), outcome)
            for request in head.requests:
                self._serve([request], hand=False)
        for f in rest:
            self._serve(f.requests, hand=False)

    def _write_loop(self) -> None:
        """The writer thread: write and commit the batches handed to it, all those waiting
        together (one lock, one write, one commit), then answer their jobs."""
        stop = False
        while not stop:
            first = self._to_write.get()
            if first is None:
                return
            group = [first]
            while first.lock:
                try:
                    item = self._to_write.get_nowait()
                except queue.Empty:
                    break
                if item is None:
                    stop = True
                    break
                group.append(item)
            outcome, count = self._commit(group), len(group)
            del first, group  # not kept while waiting: their batches hold the snapshot
            for _ in range(count):  # one outcome per batch, as the engine's thread takes them
                self._written.put(outcome)
            if outcome is not None:
                self._queue.put(_Wake())  # the engine's thread may be waiting for jobs

    def _commit(self, group: list[_Handed]) -> Exception | None:
        """Write and commit batches (one, or several placed ahead), then answer their jobs;
        the reason when they were not."""
        head, timings = group[0], self.timings
        uow = head.uow
        try:
            if head.generation <= self._broken:
                raise _Again("a batch handed before it was not written")
            if uow is None:
                uow = self._uow_factory()
                uow.__enter__()
            head.batch.uow = uow
            head.batch._write(_Rows.of([h.rows for h in group]), timings, commit=True,
                              unchanged_since=self._cursor if head.lock else None)
            t1 = time.perf_counter()
            uow.commit(again=False)  # PostgreSQL: committed with the writes, no round trip
            timings.commit += time.perf_counter() - t1
            self._cursor = head.batch._snap.cursor
        except BookingsChanged as exc:  # the engine's thread runs them again
            self._broken = head.generation
            return _Again(f"another writer changed bookings since the batch before ({exc})")
        except Exception as exc:  # the engine's thread runs them again
            self._broken = head.generation
            return exc
        finally:
            for handed in group:
                done = uow if handed is head else handed.uow  # the others' reads
                if done is not None:
                    done.__exit__(None, None, None)
        for handed in group:
            self.ahead += handed.lock
            self._answer(handed.requests, handed.results)
        return None

    def _answer(self, requests: list[_Request], results: list[tuple[bool, Any]]) -> None:
        """A batch was written: give each job its result or its error."""
        self.batches += 1
        self.jobs += len(requests)
        for request, (ok, value) in zip(requests, results, strict=True):
            if ok:
                request.done.give(value)
            else:
                request.done.fail(value)

    def _serve(self, requests: list[_Request], *, hand: bool = True) -> None:
        """Run ``requests`` as one batch under the booking lock (its writes handed to the
        writer thread when ``hand`` and pipelined); a batch that fails runs again job by
        job, and a job that fails alone gets the error."""
        try:
            results = self._batch(requests, hand=hand)
        except Exception as exc:  # the engine thread's edge: retry alone, else report
            self._snap = None
            if len(requests) > 1:
                log.warning("allocation batch of %d failed (%s); running its jobs one by one",
                            len(requests), exc)
                for request in requests:
                    self._serve([request], hand=False)
                return
            requests[0].done.fail(exc)
            return
        if results is not None:  # else handed to the writer thread, which answers
            self._answer(requests, results)

    def _batch(self, requests: list[_Request], *, hand: bool
               ) -> list[tuple[bool, Any]] | None:
        for _ in range(3):
            try:
                return self._attempt(requests, hand=hand)
            except _Reload as why:
                log.info("allocation snapshot reloaded: %s", why)
                self._snap = None
        raise Unavailable("the allocation snapshot kept changing; try again")

    def _attempt(self, requests: list[_Request], *, hand: bool
                 ) -> list[tuple[bool, Any]] | None:
        """One batch: lock, catch up, the jobs, the writes; None when the writes and the
        commit were handed to the writer thread (which answers the jobs)."""
        now, timings, t0 = self._clock(), self.timings, time.perf_counter()
        uow, handed = self._uow_factory(), False
        try:
            uow.__enter__()
            snap = self._catch_up(uow, now)
            batch = Batch(uow, now, snap, kept=self._kept)
            batch._prefetch([k for r in requests for k in r.named],
                            [sid for r in requests for sid in r.slices])
            t1 = time.perf_counter()
            results = [self._one(batch, r) for r in requests]
            t2 = time.perf_counter()
            timings.catch_up += t1 - t0
            timings.placing += t2 - t1
            if hand and self._pipelined(uow):
                if batch._own_changes or batch._savepoints:
                    batch._follow_own_changes()
                self._hand_over(_Handed(uow, batch, batch._to_write(), requests, results,
                                        lock=False, generation=self._generation))
                handed = True
                return None
            batch._flush(timings)
            t3 = time.perf_counter()
            uow.commit(again=False)
            timings.commit += time.perf_counter() - t3
            return results
        finally:
            if not handed:
                uow.__exit__(None, None, None)

    def _pipelined(self, uow: UnitOfWork) -> bool:
        """Whether batches are written by the writer thread: on PostgreSQL (unless the engine
        was made with ``pipeline`` set), where the writes run in the server meanwhile. On
        SQLite they would run in this process, and its thread switches cost more."""
        if self._shared is None:
            bind = getattr(uow, "bind", None)
            self._shared = bind is not None and bind.dialect.name == "postgresql"
        if self._pipeline is None:
            self._pipeline = self._shared
        return self._pipeline

    def _hand_over(self, handed: _Handed) -> None:
        assert handed.lock or not self._inflight, "a batch placed under the lock goes alone"
        slivers: dict[int, list[SliverRow]] = {}
        for row in handed.rows.slivers:
            slivers.setdefault(row.slice_id, []).append(row)
        self._inflight.append(_InFlight(handed.requests, handed.batch._pending, slivers,
                                        handed.batch))
        self._to_write.put(handed)

    def _one(self, batch: Batch, request: _Request) -> tuple[bool, Any]:
        savepoint = None
        if request.savepoint:
            batch._savepoints = True
            batch._write_deferred()  # before the savepoint, which would take them back
            savepoint = batch.uow.savepoint()
        batch._start_job()
        try:
            value = request.job(batch)
        except _Reload:
            raise
        except Exception as exc:  # a job's own failure: its caller gets it
            if savepoint is not None:
                savepoint.rollback()
                batch._slivers.clear()
            batch._undo_job()
            return False, exc
        if savepoint is not None:
            savepoint.commit()
            batch._slivers.clear()  # it may have written slivers itself: read them again
        batch._keep_job()
        return True, value

    def _reload(self, uow: UnitOfWork, now: datetime) -> _Snapshot:
        """Load the whole snapshot again. A large one is frozen out of the garbage collector's
        scans (:func:`gc.freeze`): at 100k hosts each full collection would walk millions of
        long-lived objects, a few hundred ms every so often on the engine's thread. Before the
        next load the old one is let go and collected (its calendar and index refer to each
        other, so refcounting alone does not free them)."""
        self._kept.clear()
        self._snap = None
        if self._frozen:
            gc.unfreeze()
            gc.collect()
            self._frozen = False
        snap = self._snap = _load(uow, now)
        if len(snap.names) >= FREEZE_AT:
            gc.freeze()
            self._frozen = True
        return snap

    def _catch_up(self, uow: UnitOfWork, now: datetime) -> _Snapshot:
        snap = self._snap
        if snap is None:
            uow.leases.changes.lock()
            return self._reload(uow, now)
        pruned, changes = uow.leases.changes.lock_since(snap.cursor)
        if snap.cursor < pruned or any(c.kind == NODE_CHANGED for c in changes):
            return self._reload(uow, now)
        if any(c.kind != BOOKINGS_CHANGED for c in changes):
            self._kept.clear()
        ports = self._kept.get(PORTS)
        for change in changes:
            if isinstance(ports, TakenPorts):
                ports.forget(change.node_id)
        if changes:
            _refresh(uow, snap, {c.node_id for c in changes if c.kind == BOOKINGS_CHANGED},
                     keep={})
            snap.cursor = changes[-1].id
        if now - snap.expired >= EXPIRE_EVERY:
            snap.calendar.expire(now)
            snap.expired = now
        return snap


def collect_less_often() -> None:
    """Run the garbage collector's young collection every :data:`YOUNG_COLLECTION` new
    objects (Python's default is 700), for the whole process, once an engine starts.

    A batch makes thousands of short-lived objects. At the default, collections ran in the
    middle of batches, so most of those objects were still alive and were moved to older
    generations; that made full collections (each walking every long-lived object not
    frozen, ~100 ms at 100k hosts) run every few hundred placements: a fifth of the
    process's time at 700 placements/s on PostgreSQL. With young collections 14 times rarer
    the batch's objects are freed by reference counting first; a young collection then
    takes a few ms. It never lowers a threshold set higher already."""
    young, *older = gc.get_threshold()
    if young < YOUNG_COLLECTION:
        gc.set_threshold(YOUNG_COLLECTION, *older)


# -- one engine per database in this process ------------------------------------------------

_ENGINES: weakref.WeakKeyDictionary[Engine, AllocationEngine] = weakref.WeakKeyDictionary()
_ENGINES_GUARD = threading.Lock()


def engine_for(uow: UnitOfWork) -> AllocationEngine:
    """This process's allocation engine for the database of ``uow`` (started on first use)."""
    with _ENGINES_GUARD:
        engine = _ENGINES.get(uow.bind)
        if engine is None:
            engine = _ENGINES[uow.bind] = AllocationEngine(unit_of_work_factory(uow.bind))
    engine.start()
    return engine


def stop_engines(bind: Engine | None = None) -> None:
    """Stop this process's engine for ``bind`` (every engine when None)."""
    with _ENGINES_GUARD:
        found = [e for k, e in list(_ENGINES.items()) if bind is None or k is bind]
    for engine in found:
        engine.stop()
