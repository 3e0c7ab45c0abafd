"""Placement: constraints, preferences, failure explanations and the host index."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slicelab.domain.calendar import Booking, Calendar, Window
from slicelab.domain.errors import InsufficientResources
from slicelab.domain.inventory import Host, Inventory, Site
from slicelab.domain.placement import (
    Assignment,
    HostIndex,
    Placement,
    PlacementFailed,
    find_slot,
    place,
)
from slicelab.domain.resources import Resources
from slicelab.domain.topology import InterfaceRequest, LinkRequest, NodeRequest, Topology

T0 = datetime(2031, 3, 1, 8, 0, tzinfo=UTC)
H = timedelta(hours=1)
W = Window.of(T0, 2 * H)


def host(hid: str, cores: int = 8, mem: int = 16384, *, site: str = "s1",
         devices: tuple[tuple[str, int], ...] = (), hw: tuple[str, ...] = ("pc",),
         uplink: int | None = 1000, available: bool = True) -> Host:
    return Host(hid, f"pc-{hid}", site, Resources(cores * 1000, mem, 100, 0, devices),
                available=available, hardware_types=frozenset(hw), uplink_mbps=uplink,
                urn=f"urn:publicid:IDN+lab.example+node+pc-{hid}")


def node(name: str, cores: float = 1, mem: int = 1024, **kw: object) -> NodeRequest:
    devices = kw.pop("devices", ())
    return NodeRequest(name, Resources.of(cores=cores, memory_mib=mem,
                                          devices=devices),  # type: ignore[arg-type]
                       **kw)  # type: ignore[arg-type]


def topo(*nodes: NodeRequest, links: tuple[tuple[str, tuple[str, ...], int | None], ...] = (),
         ) -> Topology:
    ifaces, lks = [], []
    for lid, members, cap in links:
        names = []
        for m in members:
            names.append(f"{m}:{lid}")
            ifaces.append(InterfaceRequest(f"{m}:{lid}", m))
        lks.append(LinkRequest(lid, tuple(names), capacity_mbps=cap))
    return Topology(nodes=nodes, interfaces=tuple(ifaces), links=tuple(lks))


def setup(*hosts: Host, sites: tuple[Site, ...] = ()) -> tuple[Inventory, Calendar, HostIndex]:
    inv = Inventory(hosts, sites)
    cal = Calendar(inv)
    return inv, cal, HostIndex(inv, cal)


def where(p: Placement) -> dict[str, str]:
    return {a.node: a.host_id for a in p.assignments}


def fail(t: Topology, idx: HostIndex, cal: Calendar, window: Window = W) -> PlacementFailed:
    with pytest.raises(PlacementFailed) as err:
        place(t, idx, cal, window, slice_id="p/s")
    assert isinstance(err.value, InsufficientResources)
    return err.value


# -- constraints ------------------------------------------------------------------------------


def test_best_fit_takes_the_tightest_host() -> None:
    _, cal, idx = setup(host("big", 32, 65536), host("small", 4, 8192), host("mid", 8, 16384))
    assert where(place(topo(node("a", 3)), idx, cal, W, slice_id="p/s")) == {"a": "small"}
    assert where(place(topo(node("a", 6)), idx, cal, W, slice_id="p/s")) == {"a": "mid"}


def test_linked_nodes_stay_together_when_one_host_holds_them() -> None:
    _, cal, idx = setup(host("h1", 4), host("h2", 8), host("h3", 4))
    t = topo(node("a", 3), node("b", 3), node("c", 1),
             links=(("l1", ("a", "b"), 100), ("l2", ("b", "c"), 100)))
    p = place(t, idx, cal, W, slice_id="p/s")
    assert set(where(p).values()) == {"h2"} or len(set(where(p).values())) == 1
    assert p.cross_host_links == () and p.uplink_mbps == ()


def test_links_across_hosts_book_the_uplinks() -> None:
    _, cal, idx = setup(host("h1", 4), host("h2", 4))
    t = topo(node("a", 3), node("b", 3), links=(("l1", ("a", "b"), 300),))
    p = place(t, idx, cal, W, slice_id="p/s")
    assert sorted(where(p).values()) == ["h1", "h2"]
    assert p.cross_host_links == ("l1",)
    assert dict(p.uplink_mbps) == {"h1": 300, "h2": 300}
    cal.book(p.bookings(lease_id="L1"), now=T0)
    assert sum(b.uplink_mbps for b in cal.bookings()) == 600


def test_uplink_capacity_is_a_constraint_with_numbers() -> None:
    _, cal, idx = setup(host("h1", 4, uplink=1000), host("h2", 4, uplink=500))
    cal.book([Booking("old", "h2", "q/x", W, Resources.of(cores=1), uplink_mbps=200)], now=T0)
    t = topo(node("a", 3), node("b", 3), links=(("l1", ("a", "b"), 400),))
    err = fail(t, idx, cal)
    assert err.diagnosis.subject == "link 'l1'"
    assert err.diagnosis.constraint == "uplink"
    assert "host pc-h2: uplink Mbit/s: needs 400, has 300" in err.diagnosis.detail
    assert "link 'l1'" in str(err)


def test_binding_by_urn_name_or_id() -> None:
    _, cal, idx = setup(host("h1"), host("h2"), host("h3"))
    t = topo(node("a", component_id="urn:publicid:IDN+lab.example+node+pc-h2"),
             node("b", component_id="pc-h3"), node("c", component_id="h1"))
    assert where(place(t, idx, cal, W, slice_id="p/s")) == {"a": "h2", "b": "h3", "c": "h1"}


def test_unknown_binding_is_named() -> None:
    _, cal, idx = setup(host("h1"))
    err = fail(topo(node("a", component_id="pc-nope")), idx, cal)
    assert err.diagnosis.constraint == "binding"
    assert "pc-nope" in str(err) and err.field == "nodes[a]"


def test_bound_host_too_small_reports_its_shortfall() -> None:
    _, cal, idx = setup(host("h1", 2), host("h2", 16))
    err = fail(topo(node("a", 4, component_id="h1")), idx, cal)
    assert err.diagnosis.constraint == "capacity"
    assert [n.host_id for n in err.diagnosis.nearest] == ["h1"]
    assert err.diagnosis.nearest[0].shortfall == ("cores: needs 4.0, has 2.0",)


def test_unavailable_hosts_are_not_used() -> None:
    _, cal, idx = setup(host("h1", available=False), host("h2", 2))
    assert where(place(topo(node("a", 1)), idx, cal, W, slice_id="p/s")) == {"a": "h2"}
    err = fail(topo(node("a", 1, component_id="h1")), idx, cal)
    assert err.diagnosis.constraint == "availability"


def test_exclusive_node_gets_an_empty_host_to_itself() -> None:
    _, cal, idx = setup(host("h1", 8), host("h2", 8))
    cal.book([Booking("old", "h1", "q/x", W, Resources.of(cores=1))], now=T0)
    t = topo(node("x", 1, exclusive=True), node("y", 1))
    p = place(t, idx, cal, W, slice_id="p/s")
    assert where(p) == {"x": "h2", "y": "h1"}
    excl = next(a for a in p.assignments if a.node == "x")
    assert excl.exclusive and excl.resources == host("h2").capacity
    cal.book(p.bookings(lease_id="L"), now=T0)
    err = fail(topo(node("z", 1, exclusive=True)), idx, cal)
    assert err.diagnosis.constraint == "exclusive"
    assert {n.shortfall[0] for n in err.diagnosis.nearest} == {
        "not empty during the window"}


def test_exclusive_devices_are_counted() -> None:
    gpu = (("gpu", 1),)
    _, cal, idx = setup(host("h1", devices=gpu), host("h2", devices=gpu), host("h3"))
    t = topo(node("a", devices=("gpu",)), node("b", devices=("gpu",)))
    p = place(t, idx, cal, W, slice_id="p/s")
    assert sorted(where(p).values()) == ["h1", "h2"]
    cal.book(p.bookings(lease_id="L"), now=T0)
    err = fail(topo(node("c", devices=("gpu",))), idx, cal)
    assert err.diagnosis.constraint == "capacity"
    assert err.diagnosis.nearest[0].shortfall == ("device gpu: needs 1, has 0",)


def test_missing_device_site_and_hardware_type_are_named() -> None:
    _, cal, idx = setup(host("h1", site="s1", hw=("pc", "d430")), host("h2", site="s2"))
    assert fail(topo(node("a", devices=("fpga",))), idx, cal).diagnosis.constraint == "device"
    err = fail(topo(node("a", site="s9")), idx, cal)
    assert err.diagnosis.constraint == "site" and "'s9'" in str(err)
    err = fail(topo(node("a", hardware_type="d430", site="s2")), idx, cal)
    assert err.diagnosis.constraint == "hardware_type"
    t = topo(node("a", hardware_type="d430"), node("b", site="s2"))
    assert where(place(t, idx, cal, W, slice_id="p/s")) == {"a": "h1", "b": "h2"}


def test_one_sliver_per_slice_per_node_site_policy() -> None:
    strict = Site("s1", one_sliver_per_slice_per_node=True)
    _, cal, idx = setup(host("h1"), host("h2"), sites=(strict,))
    t = topo(node("a"), node("b"), links=(("l", ("a", "b"), None),))
    p = place(t, idx, cal, W, slice_id="p/s")
    assert sorted(where(p).values()) == ["h1", "h2"]
    cal.book(p.bookings(lease_id="L"), now=T0)
    err = fail(topo(node("c")), idx, cal)
    assert err.diagnosis.constraint == "one_sliver_per_slice_per_node"
    assert where(place(topo(node("c")), idx, cal, W, slice_id="p/other")) == {"c": "h1"}


def test_bookings_in_the_window_count_and_others_do_not() -> None:
    _, cal, idx = setup(host("h1", 8))
    cal.book([Booking("old", "h1", "q/x", Window.of(T0 + 2 * H, H), Resources.of(cores=6))],
             now=T0)
    assert where(place(topo(node("a", 4)), idx, cal, W, slice_id="p/s")) == {"a": "h1"}
    later = Window.of(T0 + H, 2 * H)
    err = fail(topo(node("a", 4)), idx, cal, later)
    assert "cores: needs 4.0, has 2.0" in str(err)


def test_failure_names_the_three_nearest_hosts() -> None:
    hosts = [host(f"h{i}", cores=i, mem=1024 * i) for i in range(1, 8)]
    _, cal, idx = setup(*hosts)
    err = fail(topo(node("big", 9, 4096)), idx, cal)
    d = err.diagnosis
    assert (d.subject, d.constraint) == ("node 'big'", "capacity")
    assert [n.host_id for n in d.nearest] == ["h7", "h6", "h5"]
    assert d.nearest[0].shortfall == ("cores: needs 9.0, has 7.0",)
    assert d.as_dict()["nearest"][0] == {  # type: ignore[index]
        "host_id": "h7", "host": "pc-h7", "shortfall": ["cores: needs 9.0, has 7.0"]}
    assert "nearest hosts: pc-h7 [cores: needs 9.0, has 7.0]" in str(err)


def test_a_node_that_fits_alone_but_not_with_the_rest() -> None:
    _, cal, idx = setup(host("h1", 4), host("h2", 4))
    err = fail(topo(node("a", 3), node("b", 3), node("c", 3)), idx, cal)
    assert err.diagnosis.constraint == "capacity"
    assert err.diagnosis.subject.startswith("node ")


def test_backtracking_finds_the_packing_greedy_misses() -> None:
    # best fit puts "a" (2 cores) on h-small first; "b" then needs h-small's neighbour to work
    _, cal, idx = setup(host("h1", 3, 1024), host("h2", 2, 4096))
    t = topo(node("a", 2, 512), node("b", 1, 3000))
    p = place(t, idx, cal, W, slice_id="p/s")
    assert where(p) == {"a": "h1", "b": "h2"}


def test_placement_is_deterministic() -> None:
    hosts = [host(f"h{i:02}", cores=4 + i % 3) for i in range(20)]
    t = topo(node("a", 2), node("b", 3), node("c", 1), links=(("l", ("a", "c"), 10),))
    results = set()
    for _ in range(3):
        _, cal, idx = setup(*hosts)
        results.add(tuple(sorted(where(place(t, idx, cal, W, slice_id="p/s")).items())))
    assert len(results) == 1


def test_empty_topology_places_nothing() -> None:
    _, cal, idx = setup(host("h1"))
    assert place(Topology(), idx, cal, W, slice_id="p/s").assignments == ()


# -- the index --------------------------------------------------------------------------------


def test_index_follows_the_calendar() -> None:
    _, cal, idx = setup(host("h1", 8), host("h2", 4))
    assert [h.id for h in idx.free_hosts(Resources.of(cores=3), W)] == ["h2", "h1"]
    cal.book([Booking("L", "h2", "q/x", W, Resources.of(cores=3))], now=T0)
    assert [h.id for h in idx.free_hosts(Resources.of(cores=3), W)] == ["h1"]
    later = Window.of(T0 + 3 * H, H)
    assert [h.id for h in idx.free_hosts(Resources.of(cores=3), later)] == ["h1", "h2"]
    cal.release("L")
    assert [h.id for h in idx.free_hosts(Resources.of(cores=3), W, limit=1)] == ["h2"]


def test_free_hosts_filters_site_and_hardware_type() -> None:
    _, _, idx = setup(host("h1", site="a", hw=("x",)), host("h2", site="b", hw=("y",)))
    need = Resources.of(cores=1)
    assert [h.id for h in idx.free_hosts(need, W, site="b")] == ["h2"]
    assert [h.id for h in idx.free_hosts(need, W, hardware_type="x")] == ["h1"]
    assert idx.free_hosts(need, W, site="a", hardware_type="y") == []


def test_place_accepts_a_plain_inventory() -> None:
    inv, cal, _ = setup(host("h1"))
    assert where(place(topo(node("a")), inv, cal, W, slice_id="p/s")) == {"a": "h1"}


# -- the earliest slot for a topology ---------------------------------------------------------


def test_find_slot_for_a_topology() -> None:
    _, cal, idx = setup(host("h1", 4), host("h2", 4))
    cal.book([Booking("x", "h1", "q/x", W, Resources.of(cores=3)),
              Booking("x", "h2", "q/x", W, Resources.of(cores=3))], now=T0)
    cal.book([Booking("y", "h2", "q/y", Window(T0 + 2 * H, T0 + 3 * H), Resources.of(cores=3))],
             now=T0)
    t = topo(node("a", 2), node("b", 2), node("c", 2))
    p = find_slot(t, idx, cal, duration=H, earliest=T0, horizon=T0 + 10 * H, slice_id="p/s")
    assert p.window == Window.of(T0 + 3 * H, H)
    with pytest.raises(InsufficientResources):
        find_slot(t, idx, cal, duration=H, earliest=T0, horizon=T0 + 2.5 * H, slice_id="p/s")


def test_a_placement_moved_onto_other_host_ids_keeps_everything_else() -> None:
    window = Window(datetime(2030, 1, 1, tzinfo=UTC), datetime(2030, 1, 2, tzinfo=UTC))
    one = Resources.of(cores=1, memory_mib=512)
    placed = Placement("7", window, (Assignment("a", "h1", one), Assignment("b", "h2", one, True)),
                       (("h1", 100),), ("l0",))
    moved = placed.on_hosts({"h1": "n-1", "h2": "n-2"})
    assert moved == Placement("7", window, (Assignment("a", "n-1", one),
                                            Assignment("b", "n-2", one, True)),
                              (("h1", 100),), ("l0",))
