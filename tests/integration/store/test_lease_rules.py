"""Lease rules through the services on the real database: time limits, quotas, renewal,
find-slot, advance reservations driven by the sweep, and the GENI lifecycle's refusals."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from test_lease_world import World, one_node

from slicelab.domain.errors import (
    IllegalTransition,
    InsufficientResources,
    InvalidInput,
    PolicyViolation,
)
from slicelab.domain.inventory import SiteLimits
from slicelab.domain.quotas import ProjectQuota
from slicelab.services.allocation import Allocated, allocate, earliest_slot
from slicelab.services.leases import LeaseWindow, Renewal, renew_lease
from slicelab.services.lifecycle import Action, operate, provision
from slicelab.services.quotas import set_quota, set_site_policy
from slicelab.services.sweep import SweepPolicy, sweep
from slicelab.store.leases import SitePolicy
from slicelab.store.uow import UnitOfWorkFactory

HOUR = timedelta(hours=1)


@pytest.fixture
def world(uow_factory: UnitOfWorkFactory) -> Iterator[World]:
    yield World(uow_factory, hosts=2)


def _allocate(world: World, slice_name: str, topology: dict[str, Any],
              **when: Any) -> Allocated:
    with world.uow_factory() as uow:
        return allocate(uow, world.ctx, world.caller, "p", slice_name, topology,
                        when=LeaseWindow(**when))


def _renew(world: World, slice_name: str, lease_id: str, **how: Any) -> Any:
    with world.uow_factory() as uow:
        item = uow.slices.get("p", slice_name)
        return renew_lease(uow, item, lease_id, Renewal(**how))


def test_a_lease_in_the_past_or_ending_before_it_starts_is_refused(world: World) -> None:
    past = datetime.now(UTC) - HOUR
    with pytest.raises(PolicyViolation, match="cannot start in the past") as info:
        _allocate(world, "s0", one_node(), start=past, duration=HOUR)
    assert info.value.field == "start"
    soon = datetime.now(UTC) + HOUR
    with pytest.raises(InvalidInput, match="must end after it starts"):
        _allocate(world, "s0", one_node(), start=soon, end=soon - timedelta(minutes=5))
    with pytest.raises(PolicyViolation, match="may not outlive its slice"):
        _allocate(world, "s0", one_node(), duration=timedelta(days=30))
    assert world.rows() == []


def test_quota_limits_are_named_at_allocation_and_renewal(world: World) -> None:
    with world.uow_factory() as uow:
        set_quota(uow, world.caller, "p", ProjectQuota(cores=3, longest_lease=2 * HOUR,
                                                        book_ahead=timedelta(days=1)))
    with pytest.raises(PolicyViolation, match="at most 2 hours"):
        _allocate(world, "s0", one_node(), duration=3 * HOUR)
    with pytest.raises(PolicyViolation, match="at most 1 day ahead"):
        _allocate(world, "s0", one_node(), start=datetime.now(UTC) + timedelta(days=2),
                  duration=HOUR)
    done = _allocate(world, "s0", one_node(cores=2), duration=HOUR)
    with pytest.raises(PolicyViolation, match="3 cores at once; this request brings it to 4"):
        _allocate(world, "s1", one_node(cores=2), duration=HOUR)
    with pytest.raises(PolicyViolation, match="at most 2 hours") as info:
        _renew(world, "s0", done.lease.id, by=2 * HOUR)
    assert info.value.field == "end"
    granted = _renew(world, "s0", done.lease.id, to_max=True)
    assert granted.duration == 2 * HOUR
    with pytest.raises(PolicyViolation, match="the most policy allows"):
        _renew(world, "s0", done.lease.id, to_max=True)


def test_site_limits_apply_to_each_slice(world: World) -> None:
    with world.uow_factory() as uow:
        set_site_policy(uow, world.caller, "lab",
                        SitePolicy(SiteLimits(slivers_per_slice=1, cores_per_sliver=2)))
    two = {"nodes": [{"name": "a"}, {"name": "b"}]}
    with pytest.raises(PolicyViolation, match="site lab allows 1 slivers per slice"):
        _allocate(world, "s0", two, duration=HOUR)
    with pytest.raises(PolicyViolation, match="at most 2 cores per sliver"):
        _allocate(world, "s0", one_node(cores=3), duration=HOUR)


def test_one_sliver_per_slice_per_node_spreads_a_slice(world: World) -> None:
    with world.uow_factory() as uow:
        set_site_policy(uow, world.caller, "lab",
                        SitePolicy(SiteLimits(), one_sliver_per_slice_per_node=True))
    done = _allocate(world, "s0", {"nodes": [{"name": "a"}, {"name": "b"}]}, duration=HOUR)
    assert len({r.node_id for r in done.slivers}) == 2
    with pytest.raises(InsufficientResources, match="one_sliver_per_slice_per_node"):
        _allocate(world, "s1", {"nodes": [{"name": f"x{i}"} for i in range(3)]},
                  duration=HOUR)


def test_renewal_stops_at_the_next_booking_and_says_how_far(world: World) -> None:
    start = datetime.now(UTC) + timedelta(minutes=10)
    big = one_node(cores=4)
    first = [_allocate(world, f"s{i}", big, start=start, duration=HOUR) for i in range(2)]
    later = _allocate(world, "s2", big, start=start + 2 * HOUR, duration=HOUR)
    host = {r.lease_id: r.node_id for r in world.rows()}
    clash = next(i for i in range(2) if host[first[i].lease.id] == host[later.lease.id])
    other = 1 - clash
    with pytest.raises(InsufficientResources, match="can be renewed until") as info:
        _renew(world, f"s{clash}", first[clash].lease.id, by=2 * HOUR)
    assert (start + 2 * HOUR).isoformat() in str(info.value)
    granted = _renew(world, f"s{other}", first[other].lease.id, by=HOUR)
    assert granted.end == start + 2 * HOUR
    world.assert_never_oversubscribed()


def test_find_slot_finds_the_first_free_window(world: World) -> None:
    start = datetime.now(UTC) + timedelta(minutes=10)
    big = one_node(cores=4)
    for i in range(2):
        _allocate(world, f"s{i}", big, start=start, duration=HOUR)
    _allocate(world, "s2", big, start=start + 90 * timedelta(minutes=1), duration=HOUR)
    with world.uow_factory() as uow:
        slot = earliest_slot(uow, world.caller, one_node(cores=3), duration=2 * HOUR)
    assert slot.window.start == start + HOUR  # one host frees at start+1h; s2 only uses one
    with world.uow_factory() as uow:
        slot = earliest_slot(uow, world.caller, {"nodes": [{"name": "a", "cores": 4},
                                                           {"name": "b", "cores": 4}]},
                             duration=HOUR)
    assert slot.window.start == start + 150 * timedelta(minutes=1)
    assert sorted(h for _, h in slot.hosts) == ["host0", "host1"]


def _doc_slivers(world: World, node_id: str) -> list[dict[str, Any]]:
    with world.uow_factory() as uow:
        row = uow.aggregate.desired.get(node_id)
        return list(row.document["slivers"]) if row else []


def test_an_advance_reservation_starts_and_ends_by_itself(world: World) -> None:
    start = datetime.now(UTC) + timedelta(minutes=3)
    done = _allocate(world, "s0", one_node(), start=start, duration=timedelta(minutes=5))
    (sliver,) = done.slivers
    assert sliver.allocation_state == "geni_allocated"
    assert sliver.plan["expires"] == (start + timedelta(minutes=5)).isoformat()
    with world.uow_factory() as uow:
        rows = provision(uow, world.ctx, world.caller, "p", "s0")
    assert rows[0].allocation_state == "geni_allocated"  # waits for its start
    with world.uow_factory() as uow:
        report = sweep(uow, world.ctx, now=start + timedelta(seconds=1))
    assert report.started == [done.lease.id]
    with world.uow_factory() as uow:
        (row,) = uow.aggregate.slivers.of_slice(done.lease.slice_id)
    assert (row.allocation_state, row.operational_state) == ("geni_provisioned",
                                                             "geni_configuring")
    assert [s["client_id"] for s in _doc_slivers(world, row.node_id)] == ["n1"]
    with world.uow_factory() as uow:
        report = sweep(uow, world.ctx, now=start + timedelta(minutes=5, seconds=1))
    assert report.ended == [done.lease.id]
    assert _doc_slivers(world, row.node_id) == []
    assert world.rows() == []


def test_allocations_never_provisioned_expire(world: World) -> None:
    done = _allocate(world, "s0", one_node(), duration=HOUR)
    with world.uow_factory() as uow:
        early = sweep(uow, world.ctx, now=datetime.now(UTC) + timedelta(minutes=1),
                      policy=SweepPolicy(unprovisioned_ttl=timedelta(minutes=10)))
    assert early.unprovisioned == [] and len(world.rows()) == 1
    with world.uow_factory() as uow:
        late = sweep(uow, world.ctx, now=datetime.now(UTC) + timedelta(minutes=11))
    assert late.unprovisioned == [done.lease.id]
    assert world.rows() == []


def test_lifecycle_moves_follow_the_state_table(world: World) -> None:
    _allocate(world, "s0", one_node(), duration=HOUR)
    with world.uow_factory() as uow, pytest.raises(IllegalTransition,
                                                   match="n1 .*geni_allocated"):
        operate(uow, world.ctx, world.caller, "p", "s0", Action.START)
    with world.uow_factory() as uow:
        (row,) = provision(uow, world.ctx, world.caller, "p", "s0")
    assert (row.allocation_state, row.operational_state) == ("geni_provisioned",
                                                             "geni_notready")
    assert _doc_slivers(world, row.node_id)[0]["run"] == "stopped"
    with world.uow_factory() as uow, pytest.raises(IllegalTransition,
                                                   match="provision .*geni_provisioned"):
        provision(uow, world.ctx, world.caller, "p", "s0")
    with world.uow_factory() as uow, pytest.raises(IllegalTransition,
                                                   match="stop .*geni_notready"):
        operate(uow, world.ctx, world.caller, "p", "s0", Action.STOP)
    with world.uow_factory() as uow:
        (row,) = operate(uow, world.ctx, world.caller, "p", "s0", Action.START)
    assert row.operational_state == "geni_configuring"
    assert _doc_slivers(world, row.node_id)[0]["run"] == "started"
