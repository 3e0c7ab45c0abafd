"""Quotas: how much a project may hold at once, and for how long, and a site's limits.

A :class:`ProjectQuota` caps what a project holds *at any one instant* (cores, memory,
slivers, concurrent leases), how long one lease may last and how far ahead it may start.
A site's :class:`~slicelab.domain.inventory.SiteLimits` cap each slice there. :func:`check`
compares a :class:`Demand` with the project's :class:`Holdings` over the same window (the
peak found by :func:`holdings`, a sweep over the project's bookings) and raises
:class:`PolicyViolation` naming the limit and the numbers.

For a renewal, pass the lease's whole new window as the demand and holdings that leave the
lease itself out.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from .calendar import Booking, Window
from .errors import PolicyViolation
from .inventory import Inventory, SiteLimits
from .placement import Placement
from .resources import Resources

__all__ = ["Demand", "Holdings", "ProjectQuota", "check", "holdings"]

_NOTHING = Resources()


@dataclass(frozen=True, slots=True)
class ProjectQuota:
    """Per-project limits; ``None`` is no limit."""

    cores: float | None = None
    memory_mib: int | None = None
    slivers: int | None = None
    concurrent_leases: int | None = None
    longest_lease: timedelta | None = None
    book_ahead: timedelta | None = None


@dataclass(frozen=True, slots=True)
class Holdings:
    """The most a project holds at one instant of a window, per dimension."""

    cpu_milli: int = 0
    memory_mib: int = 0
    slivers: int = 0
    leases: int = 0


@dataclass(frozen=True, slots=True)
class Demand:
    """What one request adds: its window and its slivers, each with the site it lands at."""

    project: str
    slice_id: str
    window: Window
    slivers: tuple[tuple[str, Resources], ...]  # (site, resources) per sliver

    @classmethod
    def of(cls, placement: Placement, *, project: str, inventory: Inventory) -> Demand:
        slivers = tuple((inventory.host(a.host_id).site, a.resources)
                        for a in placement.assignments)
        return cls(project, placement.slice_id, placement.window, slivers)

    @property
    def total(self) -> Resources:
        return sum((r for _, r in self.slivers), _NOTHING)


def holdings(bookings: Iterable[Booking], window: Window) -> Holdings:
    """The peak of ``bookings`` (one project's) over ``window``, by a sweep over boundaries."""
    start, end = window.start, window.end
    live = [b for b in bookings if b.window.start < end and start < b.window.end]
    if not live:
        return Holdings()
    if max(start, max(b.window.start for b in live)) < min(end, min(b.window.end for b in live)):
        return Holdings(sum(b.resources.cpu_milli for b in live),  # all live at one instant
                        sum(b.resources.memory_mib for b in live), len(live),
                        len({b.lease_id for b in live}))
    return _sweep(live, window)


def _sweep(live: list[Booking], window: Window) -> Holdings:
    events = sorted([(max(b.window.start, window.start), 1, i) for i, b in enumerate(live)]
                    + [(min(b.window.end, window.end), 0, i) for i, b in enumerate(live)])
    cpu = mem = count = 0
    peak_cpu = peak_mem = peak_count = peak_leases = 0
    leases: dict[str, int] = {}
    for _, starting, i in events:
        b = live[i]
        if starting:
            cpu, mem, count = cpu + b.resources.cpu_milli, mem + b.resources.memory_mib, count + 1
            leases[b.lease_id] = leases.get(b.lease_id, 0) + 1
            peak_cpu, peak_mem = max(peak_cpu, cpu), max(peak_mem, mem)
            peak_count, peak_leases = max(peak_count, count), max(peak_leases, len(leases))
        else:
            cpu, mem, count = cpu - b.resources.cpu_milli, mem - b.resources.memory_mib, count - 1
            leases[b.lease_id] -= 1
            if not leases[b.lease_id]:
                del leases[b.lease_id]
    return Holdings(peak_cpu, peak_mem, peak_count, peak_leases)


def _human(span: timedelta) -> str:
    seconds = int(span.total_seconds())
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = seconds // size
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds} seconds" if seconds % 60 else f"{seconds // 60} minutes"


def _cores(milli: int) -> str:
    return f"{milli / 1000:g}"


def check(demand: Demand, *, quota: ProjectQuota, held: Holdings, now: datetime,
          sites: Mapping[str, SiteLimits] | Inventory | None = None,
          slice_slivers_at_site: Mapping[str, int] | None = None) -> None:
    """Raise :class:`PolicyViolation` if ``demand`` breaks the project's quota or a site limit.

    ``held`` is the project's peak over ``demand.window`` without this request;
    ``slice_slivers_at_site`` counts the slivers the slice already has at each site.
    """
    _check_time(demand, quota, now)
    _check_amounts(demand, quota, held)
    for site, limits in _site_limits(demand, sites):
        _check_site(demand, site, limits, now, (slice_slivers_at_site or {}).get(site, 0))


def _check_time(demand: Demand, quota: ProjectQuota, now: datetime) -> None:
    p, window = demand.project, demand.window
    if quota.longest_lease is not None and window.duration > quota.longest_lease:
        raise PolicyViolation(
            f"project {p} may hold a lease for at most {_human(quota.longest_lease)}; "
            f"this one lasts {_human(window.duration)}", field="end")
    ahead = window.start - now
    if quota.book_ahead is not None and ahead > quota.book_ahead:
        raise PolicyViolation(
            f"project {p} may book at most {_human(quota.book_ahead)} ahead; "
            f"this lease starts in {_human(ahead)}", field="start")


def _check_amounts(demand: Demand, quota: ProjectQuota, held: Holdings) -> None:
    p, total = demand.project, demand.total
    cpu = held.cpu_milli + total.cpu_milli
    if quota.cores is not None and cpu > round(quota.cores * 1000):
        raise PolicyViolation(f"project {p} may hold {quota.cores:g} cores at once; "
                              f"this request brings it to {_cores(cpu)}", field="cores")
    amounts = (("memory_mib", "MiB of memory", quota.memory_mib,
                held.memory_mib + total.memory_mib),
               ("slivers", "slivers", quota.slivers, held.slivers + len(demand.slivers)),
               ("concurrent_leases", "leases", quota.concurrent_leases, held.leases + 1))
    for name, label, limit, value in amounts:
        if limit is not None and value > limit:
            raise PolicyViolation(f"project {p} may hold {limit} {label} at once; "
                                  f"this request brings it to {value}", field=name)


def _site_limits(demand: Demand, sites: Mapping[str, SiteLimits] | Inventory | None,
                 ) -> list[tuple[str, SiteLimits]]:
    names = sorted({site for site, _ in demand.slivers})
    if sites is None:
        return []
    if isinstance(sites, Inventory):
        return [(n, sites.site(n).limits) for n in names]
    return [(n, sites[n]) for n in names if n in sites]


def _check_site(demand: Demand, site: str, limits: SiteLimits, now: datetime,
                existing: int) -> None:
    window, here = demand.window, [r for s, r in demand.slivers if s == site]
    if limits.longest_lease is not None and window.duration > limits.longest_lease:
        raise PolicyViolation(f"site {site} allows leases of at most "
                              f"{_human(limits.longest_lease)}; this one lasts "
                              f"{_human(window.duration)}", field="end")
    if limits.book_ahead is not None and window.start - now > limits.book_ahead:
        raise PolicyViolation(f"site {site} takes bookings at most {_human(limits.book_ahead)} "
                              f"ahead; this lease starts in {_human(window.start - now)}",
                              field="start")
    count = existing + len(here)
    if limits.slivers_per_slice is not None and count > limits.slivers_per_slice:
        raise PolicyViolation(f"site {site} allows {limits.slivers_per_slice} slivers per "
                              f"slice; this request brings slice {demand.slice_id} to {count}",
                              field="slivers")
    for r in here:
        _check_sliver_size(site, limits, r)


def _check_sliver_size(site: str, limits: SiteLimits, r: Resources) -> None:
    if limits.cores_per_sliver is not None and r.cpu_milli > round(limits.cores_per_sliver * 1000):
        raise PolicyViolation(f"site {site} allows at most {limits.cores_per_sliver:g} cores "
                              f"per sliver; one asks for {_cores(r.cpu_milli)}", field="cores")
    if limits.memory_mib_per_sliver is not None and r.memory_mib > limits.memory_mib_per_sliver:
        raise PolicyViolation(f"site {site} allows at most {limits.memory_mib_per_sliver} MiB "
                              f"per sliver; one asks for {r.memory_mib}", field="memory_mib")
