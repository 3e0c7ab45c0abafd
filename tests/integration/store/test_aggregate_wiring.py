"""The aggregate's services wired together: the lease end reaches the desired document, the
free-node index follows every booking, steady heartbeats are batched, a failed placement
carries its diagnosis, and the aggregate's permission table."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from test_lease_world import World, one_node

from slicelab.domain.errors import PermissionDenied
from slicelab.domain.members import Member
from slicelab.domain.placement import PlacementFailed
from slicelab.domain.resources import Resources
from slicelab.domain.roles import Caller
from slicelab.services import quotas
from slicelab.services.allocation import allocate
from slicelab.services.heartbeats import HeartbeatBatcher, SqlHeartbeatSink
from slicelab.services.inventory import index_nodes
from slicelab.services.leases import LeaseWindow, Renewal, renew_lease
from slicelab.services.nodes import _heartbeat
from slicelab.services.provisioning import plan_from_row, refresh_desired
from slicelab.services.topology_apply import apply_topology, release_slice, slice_status
from slicelab.store.uow import UnitOfWorkFactory


def _free_cores(world: World, node_id: str) -> float:
    with world.uow_factory() as uow:
        found = {n: c for n, c, _ in uow.inventory.free_nodes(Resources(), limit=100)}
    return found.get(node_id, 0) / 1000


def test_the_lease_end_reaches_the_desired_document_and_the_status(
        uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, hosts=1)
    with uow_factory() as uow:
        rows = apply_topology(uow, world.ctx, world.caller, "p", "s0", one_node())
        plan = plan_from_row(rows[0])
        assert plan.expires is not None
        refresh_desired(uow, world.ctx, None)
        doc = uow.aggregate.desired.get(rows[0].node_id)
        assert doc is not None
        assert doc.document["slivers"][0]["expires"] == plan.expires
        status = slice_status(uow, world.caller, "p", "s0")
    with uow_factory() as uow:
        lease = uow.leases.leases.of_slice(uow.slices.get("p", "s0").id or 0)[0]
    assert datetime.fromisoformat(plan.expires) == lease.window.end
    assert status[0].expires == plan.expires


def test_bookings_renewals_and_releases_keep_the_free_node_index_current(
        uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, hosts=1, cores=4)
    with uow_factory() as uow:
        index_nodes(uow)
        uow.commit()
    assert _free_cores(world, "n-0000") == 4
    with uow_factory() as uow:
        apply_topology(uow, world.ctx, world.caller, "p", "s0", one_node(cores=3))
    assert _free_cores(world, "n-0000") == 1
    start = datetime.now(UTC) + timedelta(hours=1)
    with uow_factory() as uow:
        done = allocate(uow, world.ctx, world.caller, "p", "s1", one_node(cores=1),
                        when=LeaseWindow(start=start, duration=timedelta(hours=1)))
    assert _free_cores(world, "n-0000") == 0  # headroom: the later booking counts too
    with uow_factory() as uow:
        renew_lease(uow, uow.slices.get("p", "s1"), done.lease.id, Renewal(by=timedelta(hours=1)))
        release_slice(uow, world.ctx, world.caller, "p", "s0")
    assert _free_cores(world, "n-0000") == 3


def test_a_failed_placement_carries_its_diagnosis(uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, hosts=1, cores=2)
    with uow_factory() as uow, pytest.raises(PlacementFailed) as err:
        apply_topology(uow, world.ctx, world.caller, "p", "s0", one_node(cores=8))
    members = err.value.extensions()
    assert members["diagnosis"]["subject"] == "node 'n1'"  # type: ignore[index]
    assert members["diagnosis"]["constraint"] == "capacity"  # type: ignore[index]


def test_steady_heartbeats_are_batched_and_new_nodes_written_at_once(
        uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, hosts=1)
    batcher = HeartbeatBatcher(SqlHeartbeatSink(uow_factory), period=60)
    ctx = replace(world.ctx, heartbeats=batcher)
    with uow_factory() as uow:
        seen = _heartbeat(uow, ctx, "n-0000")
    assert seen.last_seen is not None and batcher.pending("n-0000") == seen.last_seen
    with uow_factory() as uow:
        node = uow.aggregate.nodes.find("n-0000")
        assert node is not None and node.last_seen is None  # not written per poll
    assert batcher.flush() == 1
    with uow_factory() as uow:
        node = uow.aggregate.nodes.find("n-0000")
        assert node is not None and node.last_seen == seen.last_seen
        uow.aggregate.nodes.save(replace(node, auth_failures=2))
        uow.commit()
    with uow_factory() as uow:
        _heartbeat(uow, ctx, "n-0000")  # failures to reset: written in the request
    assert len(batcher) == 0
    with uow_factory() as uow:
        node = uow.aggregate.nodes.find("n-0000")
        assert node is not None and node.auth_failures == 0


def test_quota_and_limits_have_their_own_operations(uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, hosts=1)
    now = datetime.now(UTC)
    with uow_factory() as uow:
        plain = Caller(member=uow.members.add(Member(name="bob", email="b@example.org",
                                                     created=now)))
        uow.commit()
        assert quotas.get_quota(uow, plain, "p").cores is None
        with pytest.raises(PermissionDenied, match="quota.set"):
            quotas.set_quota(uow, plain, "p", quotas.get_quota(uow, plain, "p"))
        with pytest.raises(PermissionDenied, match="limits.set"):
            quotas.set_site_policy(uow, plain, "lab", quotas.get_site_policy(uow, plain, "lab"))
        quotas.set_quota(uow, world.caller, "p", quotas.get_quota(uow, plain, "p"))
