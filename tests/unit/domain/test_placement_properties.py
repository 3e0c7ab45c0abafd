"""Placement against brute force on small random cases: sound, and complete when small."""

from __future__ import annotations

import contextlib
import itertools
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from slicelab.domain.calendar import Booking, Calendar, Window
from slicelab.domain.errors import InsufficientResources
from slicelab.domain.inventory import Host, Inventory, Site
from slicelab.domain.placement import PlacementFailed, PlacementPolicy, place
from slicelab.domain.resources import Resources
from slicelab.domain.topology import InterfaceRequest, LinkRequest, NodeRequest, Topology

T0 = datetime(2031, 3, 1, tzinfo=UTC)
H = timedelta(hours=1)
W = Window(T0 + 2 * H, T0 + 5 * H)
POLICY = PlacementPolicy(candidates_per_node=10, max_steps=100_000)


@st.composite
def cases(draw: st.DrawFn) -> tuple[Inventory, list[Booking], Topology]:
    hosts = [Host(f"h{i}", f"pc{i}", draw(st.sampled_from(["s1", "s2"])),
                  Resources(draw(st.sampled_from([2000, 4000])), 8, 0, 0,
                            (("gpu", 1),) if draw(st.booleans()) else ()),
                  uplink_mbps=draw(st.sampled_from([None, 100, 300])))
             for i in range(draw(st.integers(1, 3)))]
    inv = Inventory(hosts, [Site("s2", one_sliver_per_slice_per_node=True)])
    bookings = []
    for i in range(draw(st.integers(0, 4))):
        a = draw(st.integers(0, 6))
        bookings.append(Booking(f"b{i}", draw(st.sampled_from(hosts)).id,
                                draw(st.sampled_from(["p/s", "q/t"])),
                                Window(T0 + a * H, T0 + (a + draw(st.integers(1, 3))) * H),
                                Resources(draw(st.sampled_from([500, 1000, 2000])), 2),
                                draw(st.integers(0, 4)) == 0, draw(st.sampled_from([0, 100]))))
    nodes = tuple(NodeRequest(f"n{i}", Resources(draw(st.sampled_from([500, 1000, 1500])),
                                                 draw(st.integers(0, 4)), 0, 0,
                                                 (("gpu", 1),) if draw(st.booleans()) else ()),
                              exclusive=draw(st.integers(0, 5)) == 0,
                              site=draw(st.sampled_from([None, None, "s1"])))
                  for i in range(draw(st.integers(1, 4))))
    links, ifaces = [], []
    for j, (x, y) in enumerate(itertools.combinations(range(len(nodes)), 2)):
        if draw(st.booleans()):
            ifaces += [InterfaceRequest(f"i{j}a", f"n{x}"), InterfaceRequest(f"i{j}b", f"n{y}")]
            links.append(LinkRequest(f"l{j}", (f"i{j}a", f"i{j}b"),
                                     capacity_mbps=draw(st.sampled_from([None, 100, 200]))))
    return inv, bookings, Topology(nodes, tuple(ifaces), tuple(links))


def valid(inv: Inventory, bookings: list[Booking], t: Topology, assign: dict[str, str]) -> bool:
    """An independent checker: instant by instant, host by host."""
    live = [b for b in bookings if b.window.overlaps(W)]
    uplink = _uplinks(inv, t, assign)
    for hid, h in inv.hosts.items():
        mine = [n for n in t.nodes if assign[n.client_id] == hid]
        if not mine:
            continue
        if any(n.site and n.site != h.site for n in mine):
            return False
        if any(n.exclusive for n in mine) and (len(mine) > 1 or any(b.host_id == hid
                                                                      for b in live)):
            return False
        strict = inv.site(h.site).one_sliver_per_slice_per_node
        if strict and (len(mine) > 1 or any(b.host_id == hid and b.slice_id == "p/s"
                                                     for b in live)):
            return False
        own = sum((n.resources for n in mine), Resources())
        for t_ in [W.start] + [b.window.start for b in live if b.window.start > W.start]:
            now = [b for b in live if b.host_id == hid and b.window.start <= t_ < b.window.end]
            if any(b.exclusive for b in now):
                return False
            if (own + sum((b.resources for b in now), Resources())).shortfall(h.capacity):
                return False
            up = uplink.get(hid, 0) + sum(b.uplink_mbps for b in now)
            if h.uplink_mbps is not None and up > h.uplink_mbps:
                return False
    return True


def _uplinks(inv: Inventory, t: Topology, assign: dict[str, str]) -> dict[str, int]:
    out: dict[str, int] = {}
    for link in t.links:
        hosts = {assign[n] for n in t.link_nodes(link)}
        if len(hosts) > 1:
            for h in hosts:
                out[h] = out.get(h, 0) + (link.capacity_mbps or 0)
    return out


@settings(max_examples=300, deadline=None)
@given(cases())
def test_placement_is_sound_and_complete_on_small_cases(
        case: tuple[Inventory, list[Booking], Topology]) -> None:
    inv, drawn, t = case
    cal = Calendar(inv)
    for b in drawn:  # what is booked already is consistent
        with contextlib.suppress(InsufficientResources):
            cal.book([b], now=T0)
    bookings = list(cal.bookings())
    names = [n.client_id for n in t.nodes]
    try:
        p = place(t, inv, cal, W, slice_id="p/s", policy=POLICY)
    except PlacementFailed as err:
        for combo in itertools.product(list(inv.hosts), repeat=len(names)):
            assert not valid(inv, bookings, t, dict(zip(names, combo, strict=True))), (
                f"missed {combo}: {err}")
        assert err.diagnosis.constraint and err.diagnosis.subject
    else:
        assign = {a.node: a.host_id for a in p.assignments}
        assert valid(inv, bookings, t, assign), (list(inv.hosts.values()), bookings, assign)
        cal.book(p.bookings(lease_id="new"), now=T0)  # the calendar agrees
