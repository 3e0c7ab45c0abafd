"""No double booking: random books, renewals and releases against a brute-force oracle."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from slicelab.domain.calendar import ALL_TIME, Booking, Calendar, Usage, Window
from slicelab.domain.errors import InsufficientResources
from slicelab.domain.inventory import Host, Inventory
from slicelab.domain.resources import Resources

T0 = datetime(2031, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
HOSTS = [Host(h, h, "s", Resources(4000, 8, 0, 0, (("gpu", 1),)), uplink_mbps=10)
         for h in ("a", "b")]


def at(hour: int) -> datetime:
    return T0 + hour * H


def oversubscribed(bookings: list[Booking]) -> bool:
    """Brute force: at every instant where some booking starts, sum what is live per host."""
    instants = {b.window.start for b in bookings}
    for host in HOSTS:
        for t in instants:
            live = [b for b in bookings
                    if b.host_id == host.id and b.window.start <= t < b.window.end]
            total = sum((b.resources for b in live), Resources())
            if total.shortfall(host.capacity):
                return True
            if sum(b.uplink_mbps for b in live) > (host.uplink_mbps or 0):
                return True
            if any(b.exclusive for b in live) and len(live) > 1:
                return True
    return False


def brute_peak(bookings: list[Booking], host: str, window: Window) -> Usage:
    """The peak over ``window`` found instant by instant (every start inside the window)."""
    live = [b for b in bookings if b.host_id == host and b.window.overlaps(window)]
    instants = {window.start} | {b.window.start for b in live if b.window.start > window.start}
    cpu = mem = gpu = up = 0
    for t in instants:
        now = [b for b in live if b.window.start <= t < b.window.end]
        cpu = max(cpu, sum(b.resources.cpu_milli for b in now))
        mem = max(mem, sum(b.resources.memory_mib for b in now))
        gpu = max(gpu, sum(b.resources.device_counts.get("gpu", 0) for b in now))
        up = max(up, sum(b.uplink_mbps for b in now))
    return Usage(Resources(cpu, mem, 0, 0, (("gpu", gpu),)), up, len(live),
                 any(b.exclusive for b in live), frozenset(b.slice_id for b in live))


shares = st.builds(
    lambda host, cpu, mem, gpu, up, excl: (host, Resources(cpu, mem, 0, 0,
                                                           (("gpu", 1),) if gpu else ()),
                                           up, excl),
    st.sampled_from(["a", "b"]), st.sampled_from([500, 1000, 2000, 3000]),
    st.integers(0, 6), st.booleans(), st.integers(0, 6), st.booleans())


class CalendarMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.cal = Calendar(Inventory(HOSTS))
        self.n = 0
        self.looked: set[Window] = set()

    def mine(self) -> list[Booking]:
        return list(self.cal.bookings())

    def leases(self) -> list[str]:
        return sorted({b.lease_id for b in self.mine()})

    @rule(start=st.integers(0, 10), hours=st.integers(1, 4),
          slice_id=st.sampled_from(["p/s", "q/t"]), parts=st.lists(shares, min_size=1, max_size=3))
    def book(self, start: int, hours: int, slice_id: str,
             parts: list[tuple[str, Resources, int, bool]]) -> None:
        self.n += 1
        lease = f"l{self.n}"
        window = Window(at(start), at(start + hours))
        new = [Booking(lease, h, slice_id, window, r, excl, up)
               for h, r, up, excl in parts]
        expect_ok = not oversubscribed(self.mine() + new)
        try:
            self.cal.book(new, now=T0)
        except InsufficientResources:
            assert not expect_ok, "refused a lease that fits"
        else:
            assert expect_ok, "accepted a lease that oversubscribes"

    @precondition(lambda self: bool(self.cal.bookings()))
    @rule(pick=st.integers(0, 1000), extra=st.integers(1, 6), partial=st.booleans())
    def renew(self, pick: int, extra: int, partial: bool) -> None:
        lease = self.leases()[pick % len(self.leases())]
        group = self.cal.lease(lease)
        old = group[0].window
        wanted = old.end + extra * H
        others = [b for b in self.mine() if b.lease_id != lease]

        def fits_until(end: datetime) -> bool:
            moved = [Booking(b.lease_id, b.host_id, b.slice_id, Window(old.start, end),
                             b.resources, b.exclusive, b.uplink_mbps) for b in group]
            return not oversubscribed(others + moved)

        best = max(h for h in range(0, extra + 1) if fits_until(old.end + h * H))
        try:
            got = self.cal.renew(lease, end=wanted, now=T0, partial=partial)
        except InsufficientResources:
            assert not partial and best < extra
            assert self.cal.lease(lease)[0].window == old
        else:
            assert got.end == old.end + best * H
            assert partial or best == extra

    @precondition(lambda self: bool(self.cal.bookings()))
    @rule(pick=st.integers(0, 1000))
    def release(self, pick: int) -> None:
        lease = self.leases()[pick % len(self.leases())]
        assert self.cal.release(lease)
        assert lease not in self.leases()

    @rule(host=st.sampled_from(["a", "b"]), start=st.integers(0, 12), hours=st.integers(1, 6))
    def look(self, host: str, start: int, hours: int) -> None:
        """Ask for a peak, so that the calendar keeps it and must keep it right."""
        window = Window(at(start), at(start + hours))
        self.looked.add(window)
        self.cal.peak(host, window)

    @invariant()
    def never_oversubscribed(self) -> None:
        assert not oversubscribed(self.mine())

    @invariant()
    def kept_peaks_are_exact(self) -> None:
        windows = {ALL_TIME, *self.looked, *(b.window for b in self.mine())}
        for host in ("a", "b"):
            for window in windows:
                got, want = self.cal.peak(host, window), brute_peak(self.mine(), host, window)
                if want.bookings:
                    assert got == want, (host, window)
                else:
                    assert got == Usage(), (host, window)


CalendarMachine.TestCase.settings = settings(max_examples=100, stateful_step_count=30,
                                             deadline=None)
TestCalendarMachine = CalendarMachine.TestCase
