"""When no window fits, find_slot says why: the diagnosis of the earliest window, naming the
node that does not fit and what each nearest host lacks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slicelab.domain.calendar import Booking, Calendar, Window
from slicelab.domain.inventory import Host, Inventory
from slicelab.domain.placement import HostIndex, PlacementFailed, find_slot
from slicelab.domain.resources import Resources
from slicelab.domain.topology import NodeRequest, Topology

T0 = datetime(2031, 3, 1, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)


def _setup() -> tuple[Calendar, HostIndex]:
    hosts = [Host(h, h, "s1", Resources.of(cores=4, memory_mib=8192),
                  hardware_types=frozenset({"pc"})) for h in ("h1", "h2")]
    inv = Inventory(hosts)
    cal = Calendar(inv)
    cal.book([Booking("x", "h1", "q/x", Window(T0, T0 + 4 * H), Resources.of(cores=3))], now=T0)
    return cal, HostIndex(inv, cal)


def test_no_window_names_the_node_and_what_each_host_lacks() -> None:
    cal, idx = _setup()
    big = Topology((NodeRequest("big", Resources.of(cores=6)),))
    with pytest.raises(PlacementFailed) as info:
        find_slot(big, idx, cal, duration=H, earliest=T0, horizon=T0 + 10 * H, slice_id="p/s")
    d = info.value.diagnosis
    assert d.subject == "node 'big'" and d.constraint == "capacity"
    assert d.detail[0].startswith("no window of 1:00:00 fits")
    assert f"at the earliest start {Window.of(T0, H)}:" in d.detail
    assert {n.host_name for n in d.nearest} == {"h1", "h2"}
    assert all(any("cores" in line for line in n.shortfall) for n in d.nearest)
    assert "no window" in str(info.value) and "nearest hosts" in str(info.value)


def test_a_window_that_fits_is_still_found() -> None:
    cal, idx = _setup()
    four = Resources.of(cores=4)
    two = Topology((NodeRequest("a", four), NodeRequest("b", four)))
    p = find_slot(two, idx, cal, duration=H, earliest=T0, horizon=T0 + 10 * H, slice_id="p/s")
    assert p.window == Window.of(T0 + 4 * H, H)
