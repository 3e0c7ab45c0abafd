"""Leases: book a topology for a window, renew, list, end.

Booking is one transaction: the candidate hosts' rows are locked in id order (PostgreSQL;
SQLite's write transactions are exclusive already), only the bookings that overlap the window
are loaded into a :class:`~slicelab.domain.calendar.Calendar`, placement runs against it, the
quotas are checked, and the bookings are inserted before the commit. Two clients can never book
the same free capacity.

Time rules (each refusal names the limit): a lease may not start in the past (a minute of clock
skew is forgiven and means "now"), must end after it starts, may not outlive its slice, and must
keep within the project's quota and the sites' limits (:mod:`slicelab.domain.quotas`).
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Collection, Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from slicelab.domain.calendar import Booking, Calendar, Window
from slicelab.domain.errors import Conflict, InvalidInput, PolicyViolation
from slicelab.domain.inventory import Host, Inventory, Site, SiteLimits
from slicelab.domain.placement import Placement, place
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
    "book_lease",
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
    policies = uow.leases.site_limits.all()
    found = uow.aggregate.nodes.list()
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

def _check_policy(uow: UnitOfWork, item: Slice, demand: Demand, hosts: HostMap, *,
                  now: datetime, without: str | None = None) -> None:
    quota: ProjectQuota = uow.leases.quotas.get(item.project)
    pid = uow.leases.quotas.project_id(item.project)
    held = [b for b in uow.leases.leases.overlapping(demand.window, project_id=pid)
            if b.lease_id != without and b.host_id in hosts.names]
    sid = str(_slice_id(item))
    per_site = Counter(hosts.inventory.host(hosts.names[b.host_id]).site for b in held
                       if b.slice_id == sid)
    check(demand, quota=quota, held=holdings(held, demand.window), now=now,
          sites=hosts.inventory, slice_slivers_at_site=per_site)


def _time_only(item: Slice, window: Window) -> Demand:
    return Demand(item.project, str(_slice_id(item)), window, ())


# -- booking ------------------------------------------------------------------------------------

def book_lease(uow: UnitOfWork, item: Slice, topology: Topology, window: Window, *,
               sliver_ids: Mapping[str, str], now: datetime,
               provision: bool = False) -> tuple[LeaseRow, Placement]:
    """Place ``topology`` for ``window`` and book it as a new lease of ``item`` (not committed).

    ``sliver_ids`` maps each node's client_id to the id its sliver will have. The placement
    returned names hosts by node id.
    """
    hosts = load_inventory(uow)
    _check_policy(uow, item, _time_only(item, window), hosts, now=now)
    uow.leases.leases.lock_hosts(hosts.ids.values())
    calendar = _calendar(uow, hosts, window)
    placement = place(topology, hosts.inventory, calendar, window,
                      slice_id=str(_slice_id(item)))
    demand = Demand.of(placement, project=item.project, inventory=hosts.inventory)
    _check_policy(uow, item, demand, hosts, now=now)
    lease = LeaseRow(f"L-{secrets.token_hex(8)}", _slice_id(item), item.project, item.name,
                     window, ACTIVE, provision, now)
    booked = placement.bookings(lease_id=lease.id)
    calendar.book(booked, now=min(now, window.start))
    uow.leases.leases.add(lease, [_stored(hosts.to_node(b), sliver_ids) for b in booked])
    assignments = tuple(replace(a, host_id=hosts.ids[a.host_id]) for a in placement.assignments)
    return lease, replace(placement, assignments=assignments)


def _stored(b: Booking, sliver_ids: Mapping[str, str]) -> Booking:
    return replace(b, sliver=sliver_ids[b.sliver] if b.sliver is not None else None)


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
    hosts = load_inventory(uow)
    own = [hosts.to_host(b) for b in uow.leases.leases.bookings_of([lease.id])
           if b.host_id in hosts.names]
    sites = sorted({hosts.inventory.host(b.host_id).site for b in own})
    limits = [hosts.inventory.site(s).limits for s in sites]
    limit = _limit_end(lease, uow.leases.quotas.get(item.project), limits, item)
    end = _wanted_end(lease, renewal, limit)
    if end <= lease.window.end:
        raise InvalidInput(f"lease {lease.id} already runs until "
                           f"{lease.window.end.isoformat()}", field="until")
    if not renewal.to_max:
        _within_slice(end, item)
        wanted = Window(lease.window.start, end)
        _check_policy(uow, item, _demand_of(item, own, hosts, wanted), hosts, now=now,
                      without=lease.id)
    node_ids = {hosts.ids[b.host_id] for b in own}
    uow.leases.leases.lock_hosts(node_ids)
    calendar = _calendar(uow, hosts, Window(lease.window.start, end), node_ids)
    granted = calendar.renew(lease.id, end=end, now=now, partial=renewal.to_max)
    if renewal.to_max:
        _check_policy(uow, item, _demand_of(item, own, hosts, granted), hosts, now=now,
                      without=lease.id)
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
