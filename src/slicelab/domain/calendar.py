"""The lease calendar: who holds what on which host, from when until when.

Every allocation is a lease over a half-open window ``[start, end)`` of timezone-aware times
(decision 2). A :class:`Booking` is one lease's share of one host: a resource vector, whether
it takes the whole host, and the bandwidth it uses on the host's uplink. A lease may book
several hosts (one booking per sliver); its bookings share one window and are booked,
renewed and released together.

Usage of a host over a window is found with a sweep line over the booking boundaries that
fall inside it, never by stepping through time: each dimension's peak is the largest sum of
the bookings live at one instant. A request fits a host over a window when, per dimension,
that peak plus the request stays within the host's capacity — the same as checking every
instant, because the request is constant over the window. When one instant of the window has
every overlapping booking live, the peak is just their sum, without a sweep. The calendar keeps
each host's peaks once found, and raises them when a booking comes without sweeping again:
booking ``L`` over ``w`` makes the peak over a window ``v`` that contains ``w`` the larger of
the old peak over ``v`` and the old peak over ``w`` plus ``L`` (``L`` is constant over ``w``).

:meth:`Calendar.find_slot` tries as start times only ``earliest`` and the ends of bookings
after it. That finds the earliest fitting window: if a window starting at ``s`` fits and
``s'`` is the latest candidate at or before ``s``, no booking ends in ``(s', s]``, so every
booking live at an instant of ``[s', s)`` is still live at ``s``; usage there is no higher than
at ``s``, and the window moved to ``s'`` fits too (for a feasibility check that is exact).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TypeVar

from .errors import Conflict, InsufficientResources, InvalidInput, NotFound
from .inventory import Host, Inventory
from .resources import Resources, _make

__all__ = [
    "ALL_TIME",
    "Booking",
    "Calendar",
    "Usage",
    "Window",
    "peak_usage",
    "renewal_end",
]

T = TypeVar("T")
_TICK = timedelta(microseconds=1)


def _require_aware(value: datetime, name: str) -> None:
    if not isinstance(value, datetime) or value.tzinfo is None or value.utcoffset() is None:
        raise InvalidInput(f"{name} must be a timezone-aware datetime, not {value!r}", field=name)


@dataclass(frozen=True, slots=True)
class Window:
    """A half-open interval ``[start, end)`` of timezone-aware times."""

    start: datetime
    end: datetime

    def __post_init__(self) -> None:
        _require_aware(self.start, "start")
        _require_aware(self.end, "end")
        if self.end <= self.start:
            raise InvalidInput(
                f"a lease must end after it starts: {self.start.isoformat()} to "
                f"{self.end.isoformat()}", field="end")

    @classmethod
    def of(cls, start: datetime, duration: timedelta) -> Window:
        return cls(start, start + duration)

    @property
    def duration(self) -> timedelta:
        return self.end - self.start

    def overlaps(self, other: Window) -> bool:
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"[{self.start.isoformat()}, {self.end.isoformat()})"


ALL_TIME = Window(datetime.min.replace(tzinfo=UTC), datetime.max.replace(tzinfo=UTC))
_Span = tuple[datetime, datetime]  # a window's (start, end), as a cheap key
_ALL_SPAN: _Span = (ALL_TIME.start, ALL_TIME.end)


@dataclass(frozen=True, slots=True)
class Booking:
    """One lease's share of one host over the lease's window."""

    lease_id: str
    host_id: str
    slice_id: str
    window: Window
    resources: Resources = field(default_factory=Resources)
    exclusive: bool = False  # the whole host: nothing else may be on it
    uplink_mbps: int = 0     # bandwidth of cross-host links on the host's uplink
    sliver: str | None = None

    def __post_init__(self) -> None:
        self.resources.require_non_negative()
        if self.uplink_mbps < 0:
            raise InvalidInput("uplink_mbps may not be negative", field="uplink_mbps")


@dataclass(frozen=True, slots=True)
class Usage:
    """The peak use of one host over a window, each dimension at its own busiest instant."""

    resources: Resources = field(default_factory=Resources)
    uplink_mbps: int = 0
    bookings: int = 0        # bookings live at some instant of the window
    exclusive: bool = False  # one of them takes the whole host
    slices: frozenset[str] = frozenset()


_EMPTY = Usage()
_NOTHING = Resources()
_SCALARS = 5  # cpu, memory, disk, bandwidth, uplink
_CACHED_WINDOWS = 8  # per host, besides ALL_TIME
_Vector = tuple[int, int, int, int, int, tuple[tuple[str, int], ...]]


def _vector(b: Booking) -> _Vector:
    r = b.resources
    return (r.cpu_milli, r.memory_mib, r.disk_gib, r.bandwidth_mbps, b.uplink_mbps, r.devices)


def _single(b: Booking) -> Usage:
    return Usage(b.resources, b.uplink_mbps, 1, b.exclusive, frozenset((b.slice_id,)))


def _usage(live: Sequence[Booking], peak: Sequence[int], devices: dict[str, int]) -> Usage:
    cpu, mem, disk, bw, uplink = peak
    frozen = tuple(sorted((n, c) for n, c in devices.items() if c))
    return Usage(_make(cpu, mem, disk, bw, frozen), uplink, len(live),
                 any(b.exclusive for b in live), frozenset(b.slice_id for b in live))


def _all_at_once(live: Sequence[Booking], window: Window) -> bool:
    """Whether one instant of ``window`` has every booking of ``live`` live."""
    first_end = min(window.end, min(b.window.end for b in live))
    return max(window.start, max(b.window.start for b in live)) < first_end


def _total(live: Sequence[Booking]) -> Usage:
    """The usage when all of ``live`` are live at once: the peak is their sum."""
    cpu = mem = disk = bw = uplink = 0
    devices: dict[str, int] = {}
    for b in live:
        r = b.resources
        cpu += r.cpu_milli
        mem += r.memory_mib
        disk += r.disk_gib
        bw += r.bandwidth_mbps
        uplink += b.uplink_mbps
        for name, count in r.devices:
            devices[name] = devices.get(name, 0) + count
    return _usage(live, (cpu, mem, disk, bw, uplink), devices)


def _events(live: Sequence[Booking], window: Window) -> list[tuple[datetime, int, int]]:
    events = []
    for i, b in enumerate(live):
        events.append((max(b.window.start, window.start), 1, i))
        events.append((min(b.window.end, window.end), 0, i))
    events.sort()  # at one instant ends (0) come before starts (1): windows are half-open
    return events


def _sweep(live: Sequence[Booking], window: Window) -> Usage:
    """Per-dimension peak by a sweep over the bookings' boundaries inside ``window``."""
    vectors = [_vector(b) for b in live]
    cpu = mem = disk = bw = up = 0
    peak = [0] * _SCALARS
    cur_dev: dict[str, int] = {}
    peak_dev: dict[str, int] = {}
    for _, starting, i in _events(live, window):
        c, m, d, w, u, devices = vectors[i]
        if not starting:
            cpu, mem, disk, bw, up = cpu - c, mem - m, disk - d, bw - w, up - u
            for name, count in devices:
                cur_dev[name] -= count
            continue
        cpu, mem, disk, bw, up = cpu + c, mem + m, disk + d, bw + w, up + u
        peak = [max(peak[0], cpu), max(peak[1], mem), max(peak[2], disk), max(peak[3], bw),
                max(peak[4], up)]
        for name, count in devices:
            cur_dev[name] = cur_dev.get(name, 0) + count
        for name, count in cur_dev.items():
            peak_dev[name] = max(peak_dev.get(name, 0), count)
    return _usage(live, peak, peak_dev)


def peak_usage(bookings: Iterable[Booking], window: Window = ALL_TIME) -> Usage:
    """Per-dimension peak of the bookings over ``window``, by a sweep over their boundaries."""
    start, end = window.start, window.end
    live = [b for b in bookings if b.window.start < end and start < b.window.end]
    if len(live) <= 1:
        return _single(live[0]) if live else _EMPTY
    if _all_at_once(live, window):
        return _total(live)
    return _sweep(live, window)


def _raised(usage: Usage, before: Usage, load: _Load) -> Usage:
    """A window's usage once ``load`` is booked over a window inside it (its usage then was
    ``before``): per dimension the larger of what it was and ``before`` plus the load."""
    r, b, add = usage.resources, before.resources, load.resources
    resources = _make(max(r.cpu_milli, b.cpu_milli + add.cpu_milli),
                      max(r.memory_mib, b.memory_mib + add.memory_mib),
                      max(r.disk_gib, b.disk_gib + add.disk_gib),
                      max(r.bandwidth_mbps, b.bandwidth_mbps + add.bandwidth_mbps),
                      _max_devices(r.devices, (b + add).devices if add.devices else b.devices))
    slices = usage.slices if load.slices <= usage.slices else usage.slices | load.slices
    return Usage(resources, max(usage.uplink_mbps, before.uplink_mbps + load.uplink_mbps),
                 usage.bookings + load.count, usage.exclusive or load.exclusive, slices)


def _max_devices(a: tuple[tuple[str, int], ...], b: tuple[tuple[str, int], ...],
                 ) -> tuple[tuple[str, int], ...]:
    """Per device the larger count of two frozen device multisets."""
    if not b or a == b:
        return a
    if not a:
        return b
    merged = dict(a)
    for name, count in b:
        merged[name] = max(merged.get(name, 0), count)
    return tuple(sorted(merged.items()))


def renewal_end(current_end: datetime, *, by: timedelta | None = None,
                to: datetime | None = None) -> datetime:
    """The end a renewal asks for: ``by`` a duration or ``to`` a time (exactly one)."""
    if (by is None) == (to is None):
        raise InvalidInput("renew either by a duration or to a time", field="renew")
    if to is not None:
        _require_aware(to, "end")
        return to
    assert by is not None
    if by <= timedelta(0):
        raise InvalidInput("a renewal must extend the lease", field="by")
    return current_end + by


@dataclass(slots=True)
class _Load:
    """What one lease puts on one host."""

    host: Host
    resources: Resources = _NOTHING
    uplink_mbps: int = 0
    count: int = 0
    exclusive: bool = False
    slices: frozenset[str] = frozenset()

    def add(self, b: Booking) -> None:
        self.resources = self.resources + b.resources if self.count else b.resources
        self.uplink_mbps += b.uplink_mbps
        self.count += 1
        self.exclusive = self.exclusive or b.exclusive
        if b.slice_id not in self.slices:
            self.slices = self.slices | {b.slice_id}


def _violations(load: _Load, usage: Usage) -> list[str]:
    """Why ``load`` does not fit on its host next to ``usage`` (empty when it fits)."""
    if _fits(load, usage):
        return []
    host = load.host
    if not host.available:
        return [f"host {host.name} is not available"]
    if usage.exclusive:
        return [f"host {host.name} is held whole by another lease"]
    if load.exclusive and (usage.bookings or load.count > 1):
        return [f"host {host.name} is not empty, so it cannot be held whole"]
    found = load.resources.shortfall(host.capacity - usage.resources)
    if host.uplink_mbps is not None and usage.uplink_mbps + load.uplink_mbps > host.uplink_mbps:
        free = host.uplink_mbps - usage.uplink_mbps
        found.append(f"uplink Mbit/s: needs {load.uplink_mbps}, has {free}")
    return [f"host {host.name}: {item}" for item in found]


def _fits(load: _Load, usage: Usage) -> bool:
    """The quick yes of :func:`_violations`: ``load`` fits on its host next to ``usage``."""
    host, need, used = load.host, load.resources, usage.resources
    cap = host.capacity
    if (not host.available or usage.exclusive or (load.exclusive and (usage.bookings
                                                                      or load.count > 1))
            or (host.uplink_mbps is not None
                and usage.uplink_mbps + load.uplink_mbps > host.uplink_mbps)):
        return False
    if (need.cpu_milli + used.cpu_milli > cap.cpu_milli
            or need.memory_mib + used.memory_mib > cap.memory_mib
            or need.disk_gib + used.disk_gib > cap.disk_gib
            or need.bandwidth_mbps + used.bandwidth_mbps > cap.bandwidth_mbps):
        return False
    return not need.devices or (need + used).fits_in(cap)


class Calendar:
    """All bookings of one aggregate, with the checks that keep every host within capacity.

    The calendar is the in-memory form of the lease table: the aggregate loads the bookings
    that overlap the time of interest and books inside the same transaction as the insert.
    Observers registered with :meth:`subscribe` hear the id of every host whose bookings
    change (placement indexes keep themselves current that way).

    Peaks are kept per host and window once found (a few windows a host, and
    :data:`ALL_TIME`). A booking raises the kept peak of its own window and of ALL_TIME (see
    :func:`_raised`), keeps those of the windows it misses and drops the rest; any other
    change to a host's bookings drops all of that host's.
    """

    def __init__(self, inventory: Inventory, bookings: Iterable[Booking] = ()) -> None:
        self.inventory = inventory
        self._by_host: dict[str, list[Booking]] = {}
        self._by_lease: dict[str, list[Booking]] = {}
        self._listeners: list[Callable[[str], None]] = []
        self._peaks: dict[str, dict[_Span, Usage]] = {}
        for booking in bookings:
            self._insert(booking)

    # -- reading -------------------------------------------------------------------------

    def subscribe(self, listener: Callable[[str], None]) -> None:
        self._listeners.append(listener)

    def bookings(self, host_id: str | None = None) -> tuple[Booking, ...]:
        if host_id is not None:
            return tuple(self._by_host.get(host_id, ()))
        return tuple(b for group in self._by_lease.values() for b in group)

    def has_bookings(self, host_id: str) -> bool:
        return bool(self._by_host.get(host_id))

    def lease(self, lease_id: str) -> tuple[Booking, ...]:
        try:
            return tuple(self._by_lease[lease_id])
        except KeyError:
            raise NotFound(f"no lease {lease_id!r}", field="lease_id") from None

    def peak(self, host_id: str, window: Window = ALL_TIME) -> Usage:
        bookings = self._by_host.get(host_id)
        if not bookings:
            return _EMPTY
        kept = self._peaks.get(host_id)
        if kept is None:
            kept = self._peaks[host_id] = {}
        span = (window.start, window.end)
        usage = kept.get(span)
        if usage is None:
            if len(kept) > _CACHED_WINDOWS:
                all_time = kept.get(_ALL_SPAN)
                kept.clear()
                if all_time is not None:
                    kept[_ALL_SPAN] = all_time
            usage = kept[span] = peak_usage(bookings, window)
        return usage

    def free(self, host_id: str, window: Window) -> Resources:
        """What is left of the host's capacity at the busiest instant of ``window``."""
        host = self.inventory.host(host_id)
        usage = self.peak(host_id, window)
        if usage.exclusive or not host.available:
            return Resources()
        return host.capacity - usage.resources

    def fits(self, host_id: str, request: Resources, window: Window, *,
             exclusive: bool = False, uplink_mbps: int = 0) -> bool:
        load = _Load(self.inventory.host(host_id), request, uplink_mbps, 1, exclusive)
        return not _violations(load, self.peak(host_id, window))

    # -- writing -------------------------------------------------------------------------

    def book(self, bookings: Sequence[Booking], *, now: datetime) -> None:
        """Book one lease (all its bookings or none); refuse anything that would oversubscribe."""
        window = self._check_new_lease(bookings, now=now)
        loads = self._loads(bookings)
        before = {host_id: self.peak(host_id, window) for host_id in loads}
        problems = []
        for host_id, load in loads.items():
            problems += _violations(load, before[host_id])
        if problems:
            raise InsufficientResources(
                f"lease {bookings[0].lease_id} does not fit over {window}: " + "; ".join(problems))
        for booking in bookings:
            self._insert(booking)
        for host_id, load in loads.items():
            self._raise_peaks(host_id, window, before[host_id], load)
        self._notify(loads)

    def release(self, lease_id: str) -> tuple[Booking, ...]:
        """Remove a lease's bookings; releasing an unknown or released lease does nothing."""
        removed = tuple(self._by_lease.pop(lease_id, ()))
        for booking in removed:
            self._by_host[booking.host_id].remove(booking)
            self._peaks.pop(booking.host_id, None)
        self._notify({b.host_id for b in removed})
        return removed

    def expire(self, now: datetime) -> tuple[Booking, ...]:
        """Drop every lease that has ended by ``now``."""
        ended = [lid for lid, group in self._by_lease.items() if group[0].window.end <= now]
        return tuple(b for lid in ended for b in self.release(lid))

    def grantable_end(self, lease_id: str, *, wanted_end: datetime) -> datetime:
        """The latest end up to ``wanted_end`` to which the lease can be extended."""
        group = self.lease(lease_id)
        current = group[0].window
        if wanted_end <= current.end:
            return current.end
        extension = Window(current.end, wanted_end)
        loads = self._loads(group)
        return min((self._first_clash(load, lease_id, extension) for load in loads.values()),
                   default=wanted_end)

    def renew(self, lease_id: str, *, end: datetime, now: datetime,
              partial: bool = False) -> Window:
        """Extend a lease to ``end``, or as far towards it as fits when ``partial``.

        Returns the lease's new window. Without ``partial``, a renewal that does not fit in
        full is refused and the error says how far it could go.
        """
        current = self.lease(lease_id)[0].window
        _require_aware(end, "end")
        if current.end <= now:
            raise Conflict(f"lease {lease_id} ended at {current.end.isoformat()}; "
                           "it cannot be renewed", field="lease_id")
        if end <= current.end:
            raise InvalidInput(f"lease {lease_id} already runs until {current.end.isoformat()}",
                               field="end")
        granted = self.grantable_end(lease_id, wanted_end=end)
        if granted < end and not partial:
            raise InsufficientResources(
                f"lease {lease_id} can be renewed until {granted.isoformat()} at most, "
                f"not until {end.isoformat()}", field="end")
        if granted > current.end:
            self._set_end(lease_id, granted)
        return Window(current.start, granted)

    def find_slot(self, attempt: Callable[[Window], T | None], *, duration: timedelta,
                  earliest: datetime, horizon: datetime,
                  host_ids: Iterable[str] | None = None) -> tuple[Window, T]:
        """The earliest window of ``duration``, starting by ``horizon``, where ``attempt`` works.

        ``attempt`` returns ``None`` when the request does not fit a window. The candidate
        starts are ``earliest`` and every booking end after it (on ``host_ids`` when given).
        """
        for start in self.candidate_starts(earliest=earliest, horizon=horizon, host_ids=host_ids):
            window = Window.of(start, duration)
            result = attempt(window)
            if result is not None:
                return window, result
        raise InsufficientResources(
            f"no window of {duration} fits with a start between {earliest.isoformat()} "
            f"and {horizon.isoformat()}", field="start")

    def candidate_starts(self, *, earliest: datetime, horizon: datetime,
                         host_ids: Iterable[str] | None = None) -> list[datetime]:
        _require_aware(earliest, "earliest")
        _require_aware(horizon, "horizon")
        keys = self._by_host.keys() if host_ids is None else host_ids
        ends = {b.window.end for h in keys for b in self._by_host.get(h, ())}
        return [earliest] + sorted(t for t in ends if earliest < t <= horizon)

    # -- internals -----------------------------------------------------------------------

    def _check_new_lease(self, bookings: Sequence[Booking], *, now: datetime) -> Window:
        if not bookings:
            raise InvalidInput("a lease needs at least one booking", field="bookings")
        _require_aware(now, "now")
        first = bookings[0]
        if any(b.lease_id != first.lease_id or (b.window is not first.window
                                                and b.window != first.window)
               for b in bookings):
            raise InvalidInput("the bookings of one lease share its id and window",
                               field="bookings")
        if first.lease_id in self._by_lease:
            raise Conflict(f"lease {first.lease_id} is booked already", field="lease_id")
        if first.window.start < now:
            raise InvalidInput(f"lease {first.lease_id} would start in the past "
                               f"({first.window.start.isoformat()} is before {now.isoformat()})",
                               field="start")
        return first.window

    def _loads(self, bookings: Iterable[Booking]) -> dict[str, _Load]:
        loads: dict[str, _Load] = {}
        for b in bookings:
            if b.host_id not in loads:
                loads[b.host_id] = _Load(self.inventory.host(b.host_id))
            loads[b.host_id].add(b)
        return loads

    def _first_clash(self, load: _Load, lease_id: str, extension: Window) -> datetime:
        """The first instant of ``extension`` at which ``load`` would not fit on its host."""
        others = [b for b in self._by_host.get(load.host.id, ())
                  if b.lease_id != lease_id and b.window.overlaps(extension)]
        instants = sorted({extension.start} | {b.window.start for b in others
                                                if b.window.start > extension.start})
        for t in instants:
            if _violations(load, peak_usage(others, Window(t, t + _TICK))):
                return t
        return extension.end

    def _set_end(self, lease_id: str, end: datetime) -> None:
        group = self._by_lease[lease_id]
        for i, old in enumerate(group):
            new = Booking(old.lease_id, old.host_id, old.slice_id, Window(old.window.start, end),
                          old.resources, old.exclusive, old.uplink_mbps, old.sliver)
            group[i] = new
            host_list = self._by_host[old.host_id]
            host_list[host_list.index(old)] = new
            self._peaks.pop(old.host_id, None)
        self._notify({b.host_id for b in group})

    def _raise_peaks(self, host_id: str, window: Window, before: Usage, load: _Load) -> None:
        """Bring the host's kept peaks up to date after ``load`` was booked over ``window``,
        where the host's peak was ``before``."""
        start, end = window.start, window.end
        kept = self._peaks.get(host_id, {})
        new = {(s, e): usage for (s, e), usage in kept.items() if e <= start or end <= s}
        new[start, end] = _raised(before, before, load)
        if len(self._by_host[host_id]) == load.count:  # nothing else on the host
            new[_ALL_SPAN] = new[start, end]
        elif _ALL_SPAN in kept:
            new[_ALL_SPAN] = _raised(kept[_ALL_SPAN], before, load)
        self._peaks[host_id] = new

    def _insert(self, booking: Booking) -> None:
        """File a booking; the caller brings the host's kept peaks up to date (or drops them)."""
        self._by_host.setdefault(booking.host_id, []).append(booking)
        self._by_lease.setdefault(booking.lease_id, []).append(booking)

    def _notify(self, host_ids: Iterable[str]) -> None:
        for host_id in sorted(host_ids):
            for listener in self._listeners:
                listener(host_id)
