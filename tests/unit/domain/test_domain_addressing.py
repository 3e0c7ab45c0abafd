"""Allocators of subnets, addresses, ports, VNIs and MACs."""

from __future__ import annotations

from ipaddress import IPv4Interface, IPv4Network

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slicelab.domain.addressing import (
    EXPERIMENT_POOL,
    VNI_FIRST,
    SubnetsInUse,
    allocate_ports,
    allocate_subnet,
    allocate_vni,
    assign_link_addresses,
    fresh_link_addresses,
    mac_address,
)
from slicelab.domain.errors import Conflict, InsufficientResources, InvalidTopology

N = IPv4Network


def test_subnets_are_first_free_24s_of_the_pool() -> None:
    assert allocate_subnet([]) == N("10.128.0.0/24")
    assert allocate_subnet([N("10.128.0.0/24")]) == N("10.128.1.0/24")
    assert allocate_subnet([N("10.128.0.0/24"), N("10.128.2.0/24")]) == N("10.128.1.0/24")
    # a named subnet of odd size in the way is skipped past, aligned
    assert allocate_subnet([N("10.128.0.64/26")]) == N("10.128.1.0/24")


def test_pool_exhaustion_raises() -> None:
    for covering in (EXPERIMENT_POOL, N("10.0.0.0/8")):
        with pytest.raises(InsufficientResources, match="exhausted"):
            allocate_subnet([covering])


@given(st.lists(st.integers(min_value=0, max_value=200), max_size=40, unique=True))
def test_allocated_subnet_never_overlaps_used(indices: list[int]) -> None:
    used = [N((int(EXPERIMENT_POOL.network_address) + i * 128, 25)) for i in indices]
    got = allocate_subnet(used)
    assert got.subnet_of(EXPERIMENT_POOL)
    assert not any(got.overlaps(u) for u in used)


_NETS = st.builds(lambda i, p: N((int(EXPERIMENT_POOL.network_address) + i * 256, p),
                                 strict=False),
                  st.integers(min_value=-40, max_value=300),
                  st.integers(min_value=20, max_value=28))


@given(st.lists(_NETS, max_size=40), _NETS)
def test_merged_ranges_allocate_and_overlap_as_the_list_of_subnets(
        used: list[IPv4Network], probe: IPv4Network) -> None:
    merged = SubnetsInUse(used)
    assert allocate_subnet(merged) == allocate_subnet(used)
    clash = merged.overlapping(probe)
    assert (clash is None) == (not any(probe.overlaps(u) for u in used))
    if clash is not None:  # a block wholly in use
        assert clash.overlaps(probe)
        assert all(any(ip in u for u in used) for ip in (clash[0], clash[-1]))


@given(st.lists(_NETS, max_size=20), st.integers(min_value=2, max_value=254))
def test_fresh_link_addresses_are_what_assignment_gives_without_names(
        used: list[IPv4Network], count: int) -> None:
    expected = assign_link_addresses("l1", [None] * count, used)
    net, got = fresh_link_addresses("l1", count, SubnetsInUse(used))
    assert net == expected[0].network
    assert got == [str(a) for a in expected]


def test_fresh_link_addresses_refuse_more_than_a_subnet_holds() -> None:
    with pytest.raises(InsufficientResources, match="too few addresses"):
        fresh_link_addresses("l1", 255, [])


def test_merged_ranges_join_neighbours() -> None:
    merged = SubnetsInUse([N("10.128.0.0/24"), N("10.128.2.0/24")])
    merged.add(N("10.128.1.0/24"))
    assert allocate_subnet(merged) == N("10.128.3.0/24")
    with pytest.raises(Conflict, match="overlaps 10.128.0.0/23"):
        assign_link_addresses("l1", ["10.128.1.7/24", None], merged)


def test_link_addresses_fill_in_around_named_ones() -> None:
    got = assign_link_addresses("l1", ["10.10.1.1/24", None, None], [])
    assert got == [IPv4Interface("10.10.1.1/24"), IPv4Interface("10.10.1.2/24"),
                   IPv4Interface("10.10.1.3/24")]
    fresh = assign_link_addresses("l2", [None, None], [N("10.128.0.0/24")])
    assert fresh == [IPv4Interface("10.128.1.1/24"), IPv4Interface("10.128.1.2/24")]


def test_named_addresses_in_use_by_another_slice_conflict() -> None:
    with pytest.raises(Conflict, match="overlaps 10.10.0.0/16"):
        assign_link_addresses("l1", ["10.10.1.1/24", None], [N("10.10.0.0/16")])


@pytest.mark.parametrize("requested", [
    ["10.10.1.1/24", "10.10.2.1/24"],  # two subnets on one link
    ["10.10.1.1/24", "10.10.1.1/24"],  # the same address twice
    ["10.10.1.0/24", None],            # the network address
])
def test_bad_named_addresses_are_refused(requested: list[str | None]) -> None:
    with pytest.raises(InvalidTopology):
        assign_link_addresses("l1", requested, [])


def test_ports_come_in_aligned_blocks() -> None:
    assert allocate_ports([]) == 20000
    assert allocate_ports([20000, 20020]) == 20010
    with pytest.raises(InsufficientResources):
        allocate_ports([20000], low=20000, high=20009)


def test_vnis_start_above_vlan_range_and_skip_used() -> None:
    assert allocate_vni([]) == VNI_FIRST
    assert allocate_vni([VNI_FIRST, VNI_FIRST + 1, VNI_FIRST + 3]) == VNI_FIRST + 2


def test_macs_are_local_unicast_stable_and_avoid_used() -> None:
    mac = mac_address("s-1", "l-1")
    assert mac.startswith("02:") and len(mac) == 17
    assert mac == mac_address("s-1", "l-1") != mac_address("s-2", "l-1")
    assert mac_address("s-1", "l-1", used={mac}) != mac
