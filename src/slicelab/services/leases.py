"""Leases: book a topology for a window, renew, list, end.

New leases are placed and booked by the allocation engine (:mod:`slicelab.services.booking`),
which checks them with :func:`booking_rules` / :func:`check_rules`. Renewals are written here,
under the booking lock that every writer of bookings takes first
(:meth:`~slicelab.store.leases.ChangeLog.lock`), with the calendar read after taking it.

Time rules (each refusal names the limit): a lease may not start in the past (a minute of clock
skew is forgiven and means "now"), must end after it starts, may not outlive its slice, and must
keep within the project's quota and the sites' limits (:mod:`slicelab.domain.quotas`).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from slicelab.domain.calendar import Booking, Calendar, Window
from slicelab.domain.errors import Conflict, InvalidInput, PolicyViolation
from slicelab.domain.inventory import Host, Inventory, Site, SiteLimits
from slicelab.domain.nodes import Node
from slicelab.domain.placement import Placement
from slicelab.domain.placement import find_slot as place_earliest
from slicelab.domain.quotas import Demand, ProjectQuota, check, holdings
from slicelab.domain.roles import Caller
from slicelab.domain.slices import Slice
from slicelab.domain.topology import Topology
from slicelab.store.leases import ACTIVE, LeaseRow
from slicelab.store.uow import UnitOfWork

from .audit import utcnow
from .inventory import index_nodes

__all__ = [
    "HARDWARE_TYPES",
    "SKEW",
    "HostMap",
    "LeaseWindow",
    "Renewal",
    "booking_rules",
    "check_rules",
    "find_slot",
    "lease_window",
    "load_inventory",
    "parse_duration",
    "renew_lease",
    "slice_leases",
]

SKEW = timedelta(minutes=1)
HARDWARE_TYPES = ("pc",)  # what every host of this aggregate can be requested as


@dataclass(frozen=True, slots=True, kw_only=True)
class LeaseWindow:
    """When a lease is wanted: ``start`` (None: now) and ``end`` or ``duration`` (None:
    until the slice expires)."""

    start: datetime | None = None
    end: datetime | None = None
    duration: timedelta | None = None


def _aware(value: datetime, name: str) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must carry a time zone (e.g. 2030-01-01T10:00Z)", field=name)
    return value


def lease_window(wanted: LeaseWindow, *, now: datetime, item: Slice) -> Window:
    """The window ``wanted`` means now, for slice ``item``; raise naming the rule broken."""
    start = _aware(wanted.start, "start") if wanted.start is not None else now
    if start < now - SKEW:
        raise PolicyViolation(f"a lease cannot start in the past: {start.isoformat()} is "
                              f"before now ({now.isoformat()})", field="start")
    start = max(start, now)
    if wanted.end is not None and wanted.duration is not None:
        raise InvalidInput("give either an end or a duration, not both", field="end")
    if wanted.duration is not None and wanted.duration <= timedelta(0):
        raise InvalidInput("a lease's duration must be positive", field="duration")
    end = wanted.end if wanted.end is not None else (
        start + wanted.duration if wanted.duration is not None else item.expires)
    if _aware(end, "end") <= start:
        raise InvalidInput(f"a lease must end after it starts: end {end.isoformat()} is not "
                           f"after start {start.isoformat()}", field="end")
    _within_slice(end, item)
    return Window(start, end)


def _within_slice(end: datetime, item: Slice) -> None:
    if end > item.expires:
        raise PolicyViolation(f"a lease may not outlive its slice: {end.isoformat()} is after "
                              f"slice {item.project}/{item.name} expires "
                              f"({item.expires.isoformat()}); renew the slice first",
                              field="end")


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str, *, field: str = "duration") -> timedelta:
    """``90m``, ``2h``, ``1d``, ``1h30m`` or a number of seconds, as a positive duration."""
    value = text.strip().lower()
    if value.isdigit():
        seconds = int(value)
    else:
        seconds, number = 0, ""
        for char in value:
            if char.isdigit():
                number += char
            elif char in _UNITS and number:
                seconds, number = seconds + int(number) * _UNITS[char], ""
            else:
                number = "!"
                break
        if number:
            raise InvalidInput(f"{field}: {text!r} is not a duration like 90m, 2h or 1d",
                               field=field)
    if seconds <= 0:
        raise InvalidInput(f"{field} must be positive, not {text!r}", field=field)
    return timedelta(seconds=seconds)


# -- inventory and calendar --------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class HostMap:
    """The inventory with hosts keyed by node *name* (so that ties between equal hosts break
    by name, which people read), and the way between names and node ids."""

    inventory: Inventory
    ids: Mapping[str, str]    # name -> node id
    names: Mapping[str, str]  # node id -> name

    def to_host(self, b: Booking) -> Booking:
        return replace(b, host_id=self.names[b.host_id])

    def to_node(self, b: Booking) -> Booking:
        return replace(b, host_id=self.ids[b.host_id])


def load_inventory(uow: UnitOfWork) -> HostMap:
    """This aggregate's hosts (nodes in boot state ``boot`` are available) and site policy."""
    return _host_map(uow, uow.aggregate.nodes.list())


def _host_map(uow: UnitOfWork, found: Iterable[Node]) -> HostMap:
    policies = uow.leases.site_limits.all()
    found = list(found)
    hosts = [Host(id=n.name, name=n.name, site=n.site, capacity=n.capacity(),
                  available=n.accepts_slivers, urn=str(n.urn),
                  hardware_types=frozenset(HARDWARE_TYPES)) for n in found]
    sites = [Site(name, p.one_sliver_per_slice_per_node, p.limits)
             for name, p in policies.items()]
    return HostMap(Inventory(hosts, sites), {n.name: n.id for n in found},
                   {n.id: n.name for n in found})


def _calendar(uow: UnitOfWork, hosts: HostMap, window: Window,
              node_ids: Collection[str] | None = None) -> Calendar:
    found = uow.leases.leases.overlapping(window, node_ids=node_ids)
    return Calendar(hosts.inventory, [hosts.to_host(b) for b in found if b.host_id in hosts.names])


def _slice_id(item: Slice) -> int:
    assert item.id is not None, "a stored slice has an id"
    return item.id


# -- quotas -------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class _Rules:
    """What a booking of one slice is checked against: the project's quota, the sites' limits,
    and the project's bookings over a window (with their sites)."""

    quota: ProjectQuota
    limits: Mapping[str, SiteLimits]
    held: tuple[Booking, ...]
    site_of: Mapping[str, str]  # node id -> site, for the slice's own bookings


def _rules(uow: UnitOfWork, item: Slice, window: Window, *, quota: ProjectQuota,
           without: str | None = None, extra: Iterable[tuple[str, Booking]] = (),
           site_of: Callable[[str], str | None] | None = None,
           limits: Mapping[str, SiteLimits] | None = None) -> _Rules:
    """The rules for ``item`` over ``window``. The project's bookings are read only when its
    quota limits amounts; else the slice's own when a site limits slivers per slice."""
    if limits is None:
        limits = {name: p.limits for name, p in uow.leases.site_limits.all().items()}
    found: list[Booking] = []
    sid = str(_slice_id(item))
    if _limits_amounts(quota):
        found = uow.leases.leases.overlapping(
            window, project_id=uow.leases.quotas.project_id(item.project))
        found += _unseen(found, (b for project, b in extra if project == item.project))
    elif any(lim.slivers_per_slice is not None for lim in limits.values()):
        found = uow.leases.leases.overlapping(window, slice_id=_slice_id(item))
        found += _unseen(found, (b for _, b in extra if b.slice_id == sid))
    held = tuple(b for b in found if b.lease_id != without)
    mine = {b.host_id for b in held if b.slice_id == sid}
    return _Rules(quota, limits, held, _sites_of(uow, mine, site_of))


def _unseen(found: list[Booking], extra: Iterable[Booking]) -> list[Booking]:
    """The ``extra`` bookings of leases not in ``found`` (a batch being written may commit
    while its bookings are counted as extra: then they are read as well)."""
    leases = {b.lease_id for b in found}
    return [b for b in extra if b.lease_id not in leases]


def _sites_of(uow: UnitOfWork, node_ids: set[str],
              site_of: Callable[[str], str | None] | None) -> dict[str, str]:
    if not node_ids:
        return {}
    if site_of is None:
        return {n.id: n.site for n in uow.aggregate.nodes.by_ids(node_ids)}
    return {n: s for n in node_ids if (s := site_of(n)) is not None}


def _limits_amounts(quota: ProjectQuota) -> bool:
    return any(v is not None for v in (quota.cores, quota.memory_mib, quota.slivers,
                                       quota.concurrent_leases))


_NO_QUOTA = ProjectQuota()


def _check(rules: _Rules, item: Slice, demand: Demand, *, now: datetime) -> None:
    if rules.quota == _NO_QUOTA and not rules.limits:
        return  # no quota and no site limits: nothing to break
    sid = str(_slice_id(item))
    held = [b for b in rules.held if b.window.overlaps(demand.window)]
    per_site = Counter(rules.site_of[b.host_id] for b in held
                       if b.slice_id == sid and b.host_id in rules.site_of)
    check(demand, quota=rules.quota, held=holdings(held, demand.window), now=now,
          sites=rules.limits, slice_slivers_at_site=per_site)


def _lock_owner(uow: UnitOfWork, item: Slice) -> ProjectQuota:
    """Take the booking lock (every writer of bookings takes it first, see
    :meth:`~slicelab.store.leases.ChangeLog.lock`): the holdings checked and the calendar read
    stay true until commit. Returns the project's quota."""
    uow.leases.changes.lock()
    quota: ProjectQuota = uow.leases.quotas.get(item.project)
    return quota


# -- booking ------------------------------------------------------------------------------------

def booking_rules(uow: UnitOfWork, item: Slice, window: Window, *, quota: ProjectQuota,
                  limits: Mapping[str, SiteLimits],
                  extra: Iterable[tuple[str, Booking]] = (),
                  site_of: Callable[[str], str | None] | None = None) -> _Rules:
    """What a new lease of ``item`` over ``window`` is checked against: the project's
    ``quota`` and the sites' ``limits`` (read once per batch by the allocation engine).
    ``extra`` are bookings not written yet, with their project (the engine's batch; read
    only when a quota or site limit needs them);
    ``site_of`` names a node's site without asking the database."""
    return _rules(uow, item, window, quota=quota, extra=extra, site_of=site_of, limits=limits)


def check_rules(rules: _Rules, item: Slice, demand: Demand, *, now: datetime) -> None:
    """Raise naming the quota or site limit ``demand`` would break."""
    _check(rules, item, demand, now=now)


def find_slot(uow: UnitOfWork, topology: Topology, *, duration: timedelta,
              earliest: datetime, horizon: datetime, slice_id: str = "probe") -> Placement:
    """The placement in the earliest window of ``duration`` starting in [earliest, horizon];
    its hosts are named by node name."""
    hosts = load_inventory(uow)
    calendar = _calendar(uow, hosts, Window(earliest, horizon + duration))
    return place_earliest(topology, hosts.inventory, calendar, duration=duration,
                          earliest=earliest, horizon=horizon, slice_id=slice_id)


# -- renewal ------------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True, kw_only=True)
class Renewal:
    """How to renew: ``by`` a duration, ``until`` a time, or ``to_max`` (exactly one)."""

    by: timedelta | None = None
    until: datetime | None = None
    to_max: bool = False


def _limit_end(lease: LeaseRow, quota: ProjectQuota, limits: list[SiteLimits],
               item: Slice) -> datetime:
    """The latest end policy allows for ``lease``: the slice's expiry and the longest leases."""
    ends = [item.expires]
    spans = [quota.longest_lease] + [s.longest_lease for s in limits]
    ends += [lease.window.start + s for s in spans if s is not None]
    return min(ends)


def _wanted_end(lease: LeaseRow, renewal: Renewal, limit: datetime) -> datetime:
    asked = sum((renewal.by is not None, renewal.until is not None, renewal.to_max))
    if asked != 1:
        raise InvalidInput("renew with exactly one of by, until or max", field="by")
    if renewal.to_max:
        if limit <= lease.window.end:
            raise PolicyViolation(f"lease {lease.id} already runs until the most policy "
                                  f"allows ({limit.isoformat()})", field="end")
        return limit
    if renewal.by is not None:
        if renewal.by <= timedelta(0):
            raise InvalidInput("a renewal must extend the lease", field="by")
        return lease.window.end + renewal.by
    assert renewal.until is not None
    return _aware(renewal.until, "until")


def renew_lease(uow: UnitOfWork, item: Slice, lease_id: str, renewal: Renewal, *,
                now: datetime | None = None) -> Window:
    """Extend a lease of ``item``; return the window granted (commits)."""
    now = now or utcnow()
    lease = uow.leases.leases.get(lease_id)
    if lease.slice_id != _slice_id(item) or lease.state != ACTIVE:
        raise Conflict(f"lease {lease_id} is not an active lease of slice "
                       f"{item.project}/{item.name}", field="lease_id")
    if lease.window.end <= now:
        raise Conflict(f"lease {lease_id} ended at {lease.window.end.isoformat()}; "
                       "it cannot be renewed", field="lease_id")
    granted = _renew(uow, item, lease, renewal, now)
    uow.commit()
    return granted


def _renew(uow: UnitOfWork, item: Slice, lease: LeaseRow, renewal: Renewal,
           now: datetime) -> Window:
    quota = _lock_owner(uow, item)
    booked = uow.leases.leases.bookings_of([lease.id])
    hosts = _host_map(uow, uow.aggregate.nodes.by_ids({b.host_id for b in booked}))
    own = [hosts.to_host(b) for b in booked if b.host_id in hosts.names]
    sites = sorted({hosts.inventory.host(b.host_id).site for b in own})
    limits = [hosts.inventory.site(s).limits for s in sites]
    limit = _limit_end(lease, quota, limits, item)
    end = _wanted_end(lease, renewal, limit)
    if end <= lease.window.end:
        raise InvalidInput(f"lease {lease.id} already runs until "
                           f"{lease.window.end.isoformat()}", field="until")
    rules = _rules(uow, item, Window(lease.window.start, max(end, limit)), quota=quota,
                   without=lease.id)
    if not renewal.to_max:
        _within_slice(end, item)
        _check(rules, item, _demand_of(item, own, hosts, Window(lease.window.start, end)),
               now=now)
    node_ids = {hosts.ids[b.host_id] for b in own}
    calendar = _calendar(uow, hosts, Window(lease.window.start, end), node_ids)
    granted = calendar.renew(lease.id, end=end, now=now, partial=renewal.to_max)
    if renewal.to_max:
        _check(rules, item, _demand_of(item, own, hosts, granted), now=now)
    uow.leases.leases.set_end(lease.id, granted.end)
    index_nodes(uow, node_ids, now=now)
    return granted


def _demand_of(item: Slice, own: list[Booking], hosts: HostMap, window: Window) -> Demand:
    slivers = tuple((hosts.inventory.host(b.host_id).site, b.resources) for b in own)
    return Demand(item.project, str(_slice_id(item)), window, slivers)


def slice_leases(uow: UnitOfWork, caller: Caller, item: Slice) -> list[LeaseRow]:
    """The active leases of ``item`` (the caller was checked by the route's service)."""
    del caller
    return uow.leases.leases.of_slice(_slice_id(item))
