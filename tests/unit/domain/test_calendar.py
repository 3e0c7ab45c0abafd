"""The lease calendar: windows, the sweep line, booking, renewal and the earliest slot."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slicelab.domain.calendar import Booking, Calendar, Window, peak_usage, renewal_end
from slicelab.domain.errors import Conflict, InsufficientResources, InvalidInput
from slicelab.domain.inventory import Host, Inventory
from slicelab.domain.resources import Resources

T0 = datetime(2031, 3, 1, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def at(hours: float) -> datetime:
    return T0 + hours * H


def win(a: float, b: float) -> Window:
    return Window(at(a), at(b))


def res(cores: float = 1, mem: int = 1024, devices: tuple[str, ...] = ()) -> Resources:
    return Resources.of(cores=cores, memory_mib=mem, devices=devices)


def host(hid: str = "h1", *, cores: int = 8, mem: int = 16384, uplink: int | None = 1000,
         devices: tuple[tuple[str, int], ...] = ()) -> Host:
    return Host(hid, f"pc-{hid}", "site1", Resources(cores * 1000, mem, 100, 0, devices),
                uplink_mbps=uplink)


def booking(lease: str, window: Window, r: Resources, *, hid: str = "h1",
            exclusive: bool = False, uplink: int = 0, slice_id: str = "p/s") -> Booking:
    return Booking(lease, hid, slice_id, window, r, exclusive, uplink)


@pytest.fixture
def cal() -> Calendar:
    return Calendar(Inventory([host("h1"), host("h2", cores=4)]))


# -- windows ----------------------------------------------------------------------------------


def test_window_must_end_after_start() -> None:
    with pytest.raises(InvalidInput, match="must end after it starts"):
        Window(at(2), at(2))
    with pytest.raises(InvalidInput, match="must end after it starts"):
        Window(at(2), at(1))


def test_window_needs_timezone_aware_times() -> None:
    with pytest.raises(InvalidInput, match="timezone-aware") as err:
        Window(datetime(2031, 1, 1), datetime(2031, 1, 2))
    assert err.value.field == "start"


def test_windows_are_half_open() -> None:
    assert not win(0, 1).overlaps(win(1, 2))
    assert win(0, 1.5).overlaps(win(1, 2))


# -- the sweep line ---------------------------------------------------------------------------


def test_peak_counts_only_simultaneous_bookings() -> None:
    bs = [booking("a", win(0, 2), res(2)), booking("b", win(2, 4), res(3)),
          booking("c", win(1, 3), res(1))]
    assert peak_usage(bs, win(0, 4)).resources.cpu_milli == 4000  # b and c at [2,3)
    assert peak_usage(bs, win(0, 1)).resources.cpu_milli == 2000
    assert peak_usage(bs, win(0, 2)).resources.cpu_milli == 3000  # a and c at [1,2)
    assert peak_usage(bs, win(5, 6)).bookings == 0


def test_peak_of_each_dimension_is_at_its_own_instant() -> None:
    bs = [booking("a", win(0, 1), res(4, 100)), booking("b", win(1, 2), res(1, 900))]
    peak = peak_usage(bs, win(0, 2))
    assert (peak.resources.cpu_milli, peak.resources.memory_mib) == (4000, 900)


@given(st.lists(st.tuples(st.integers(0, 20), st.integers(1, 6), st.integers(0, 5)),
                max_size=12), st.integers(0, 20), st.integers(1, 8))
def test_peak_matches_brute_force(spans: list[tuple[int, int, int]], s: int, d: int) -> None:
    bs = [booking(f"l{i}", win(a, a + n), res(c, 10 * c, ("gpu",) * (c % 2)))
          for i, (a, n, c) in enumerate(spans)]
    peak = peak_usage(bs, win(s, s + d))
    live = [[b for b in bs if b.window.start <= at(t) < b.window.end] for t in range(s, s + d)]
    assert peak.resources.cpu_milli == max(sum(b.resources.cpu_milli for b in x) for x in live)
    assert peak.resources.device_counts.get("gpu", 0) == max(
        sum(b.resources.device_counts.get("gpu", 0) for b in x) for x in live)


# -- booking ----------------------------------------------------------------------------------


def test_book_and_free_capacity(cal: Calendar) -> None:
    cal.book([booking("a", win(1, 3), res(5, 4096))], now=T0)
    assert cal.free("h1", win(0, 1)) == host().capacity
    assert cal.free("h1", win(2, 5)).cpu_milli == 3000
    assert cal.fits("h1", res(3), win(0, 5))
    assert not cal.fits("h1", res(4), win(2, 5))
    assert cal.fits("h1", res(8), win(3, 5))


def test_double_booking_is_refused_with_numbers(cal: Calendar) -> None:
    cal.book([booking("a", win(1, 3), res(6))], now=T0)
    with pytest.raises(InsufficientResources, match=r"pc-h1: cores: needs 4.0, has 2.0"):
        cal.book([booking("b", win(2, 4), res(4))], now=T0)
    assert [b.lease_id for b in cal.bookings("h1")] == ["a"]


def test_a_lease_is_booked_whole_or_not_at_all(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 2), res(3), hid="h2")], now=T0)
    with pytest.raises(InsufficientResources, match="pc-h2"):
        cal.book([booking("b", win(0, 2), res(1)), booking("b", win(0, 2), res(2), hid="h2")],
                 now=T0)
    assert cal.bookings("h1") == ()


def test_bookings_of_one_lease_on_one_host_add_up(cal: Calendar) -> None:
    with pytest.raises(InsufficientResources):
        cal.book([booking("a", win(0, 1), res(5)), booking("a", win(0, 1), res(5))], now=T0)


def test_booking_in_the_past_is_refused(cal: Calendar) -> None:
    with pytest.raises(InvalidInput, match="would start in the past") as err:
        cal.book([booking("a", win(-1, 2), res())], now=T0)
    assert err.value.field == "start"


def test_lease_id_is_unique(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 1), res())], now=T0)
    with pytest.raises(Conflict, match="booked already"):
        cal.book([booking("a", win(2, 3), res())], now=T0)


def test_exclusive_needs_an_empty_host_and_keeps_it(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 2), res(1))], now=T0)
    with pytest.raises(InsufficientResources, match="not empty"):
        cal.book([booking("x", win(1, 3), res(1), exclusive=True)], now=T0)
    cal.book([booking("x", win(2, 3), res(1), exclusive=True)], now=T0)
    with pytest.raises(InsufficientResources, match="held whole"):
        cal.book([booking("b", win(2.5, 4), res(0.1))], now=T0)
    assert cal.free("h1", win(2, 3)) == Resources()


def test_uplink_bandwidth_is_booked(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 2), res(), uplink=700)], now=T0)
    with pytest.raises(InsufficientResources, match=r"uplink Mbit/s: needs 400, has 300"):
        cal.book([booking("b", win(1, 2), res(), uplink=400)], now=T0)


def test_release_is_idempotent_and_frees(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 2), res(8))], now=T0)
    assert len(cal.release("a")) == 1
    assert cal.release("a") == ()
    assert cal.fits("h1", res(8), win(0, 2))


def test_expire_drops_ended_leases(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 1), res()), booking("a", win(0, 1), res(), hid="h2")], now=T0)
    cal.book([booking("b", win(0, 3), res())], now=T0)
    assert {b.lease_id for b in cal.expire(at(1))} == {"a"}
    assert [b.lease_id for b in cal.bookings()] == ["b"]


def test_observers_hear_changed_hosts(cal: Calendar) -> None:
    heard: list[str] = []
    cal.subscribe(heard.append)
    cal.book([booking("a", win(0, 1), res()), booking("a", win(0, 1), res(), hid="h2")], now=T0)
    cal.release("a")
    assert heard == ["h1", "h2", "h1", "h2"]


# -- renewal ----------------------------------------------------------------------------------


def test_renewal_end_by_or_to() -> None:
    assert renewal_end(at(2), by=3 * H) == at(5)
    assert renewal_end(at(2), to=at(7)) == at(7)
    with pytest.raises(InvalidInput):
        renewal_end(at(2), by=H, to=at(3))
    with pytest.raises(InvalidInput):
        renewal_end(at(2))


def test_renew_in_full(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 2), res(4))], now=T0)
    assert cal.renew("a", end=at(5), now=at(1)) == win(0, 5)
    assert cal.lease("a")[0].window == win(0, 5)
    assert not cal.fits("h1", res(5), win(4, 6))


def test_renew_refused_says_how_far_it_could_go(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 2), res(4))], now=T0)
    cal.book([booking("b", win(4, 6), res(6))], now=T0)
    with pytest.raises(InsufficientResources, match=r"until 2031-03-01T12:00:00\+00:00 at most"):
        cal.renew("a", end=at(8), now=at(1))
    assert cal.lease("a")[0].window == win(0, 2)


def test_renew_as_long_as_possible(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 2), res(4))], now=T0)
    cal.book([booking("b", win(4, 6), res(6))], now=T0)
    assert cal.grantable_end("a", wanted_end=at(8)) == at(4)
    assert cal.renew("a", end=at(8), now=at(1), partial=True) == win(0, 4)
    assert cal.lease("a")[0].window.end == at(4)


def test_renew_clashes_with_an_exclusive_booking(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 2), res(1))], now=T0)
    cal.book([booking("x", win(3, 5), res(1), exclusive=True)], now=T0)
    assert cal.grantable_end("a", wanted_end=at(10)) == at(3)


def test_renew_of_an_ended_lease_is_refused(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 2), res(1))], now=T0)
    with pytest.raises(Conflict, match="cannot be renewed"):
        cal.renew("a", end=at(5), now=at(2))
    with pytest.raises(InvalidInput, match="already runs until"):
        cal.renew("a", end=at(1), now=at(1))


# -- the earliest slot ------------------------------------------------------------------------


def test_find_slot_starts_at_a_booking_end(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 3), res(6))], now=T0)
    cal.book([booking("b", win(4, 5), res(6))], now=T0)

    def attempt(w: Window) -> str | None:
        return "h1" if cal.fits("h1", res(4), w) else None

    window, got = cal.find_slot(attempt, duration=H, earliest=T0, horizon=at(24))
    assert (window, got) == (win(3, 4), "h1")
    window, _ = cal.find_slot(attempt, duration=2 * H, earliest=T0, horizon=at(24))
    assert window == win(5, 7)


def test_find_slot_gives_up_at_the_horizon(cal: Calendar) -> None:
    cal.book([booking("a", win(0, 10), res(8))], now=T0)
    with pytest.raises(InsufficientResources, match="no window of 1:00:00"):
        cal.find_slot(lambda w: True if cal.fits("h1", res(1), w) else None, duration=H,
                      earliest=T0, horizon=at(5))


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 8), st.integers(1, 8)),
                max_size=10), st.integers(1, 6), st.integers(1, 8))
def test_find_slot_is_the_earliest(spans: list[tuple[int, int, int]], dur: int,
                                   cores: int) -> None:
    """Against brute force over every minute: nothing earlier fits."""
    cal = Calendar(Inventory([host("h1")]))
    for i, (a, n, c) in enumerate(spans):
        with contextlib.suppress(InsufficientResources):
            cal.book([booking(f"l{i}", win(a, a + n), res(c))], now=T0)

    def attempt(w: Window) -> bool | None:
        return True if cal.fits("h1", res(cores), w) else None

    window, _ = cal.find_slot(attempt, duration=dur * H, earliest=T0, horizon=at(60))
    assert cal.fits("h1", res(cores), window)
    minutes = int((window.start - T0).total_seconds() // 60)
    for m in range(0, minutes, 7):  # every 7th minute before it, and the minute before
        assert not cal.fits("h1", res(cores), Window.of(T0 + timedelta(minutes=m), dur * H))
    if minutes:
        before = window.start - timedelta(minutes=1)
        assert not cal.fits("h1", res(cores), Window.of(before, dur * H))
