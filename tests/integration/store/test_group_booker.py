"""The group-commit booker: concurrent requests batched into few transactions, each placed
whole or refused, never more booked than fits, the free-node index current; a failed write
takes the batch back out of the snapshot."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta

import pytest
from test_lease_world import World

from slicelab.domain.calendar import Calendar, Window
from slicelab.domain.inventory import Host, Inventory
from slicelab.domain.placement import PlacementFailed
from slicelab.domain.resources import Resources
from slicelab.domain.topology import NodeRequest, Topology
from slicelab.services.booking import BookingRequest, GroupBooker
from slicelab.services.inventory import index_nodes
from slicelab.store.leases import LeaseRow
from slicelab.store.uow import UnitOfWorkFactory

NOW = datetime.now(UTC)
WINDOW = Window(NOW, NOW + timedelta(hours=1))


def _booker(world: World, uow_factory: UnitOfWorkFactory) -> GroupBooker:
    with uow_factory() as uow:
        index_nodes(uow)
        uow.commit()
        site_ids = uow.inventory.site_ids()
        sid = uow.slices.get("p", "s0").id
    assert sid is not None
    world.slice_id = sid  # type: ignore[attr-defined]
    hosts = [Host(f"n-{i:04x}", f"host{i}", "lab", Resources.of(cores=4, memory_mib=4096))
             for i in range(len(world.capacity))]
    booker = GroupBooker(uow_factory, Calendar(Inventory(hosts)), site_ids=site_ids,
                         clock=lambda: NOW)
    booker.start()
    return booker


def _request(world: World, i: int) -> BookingRequest:
    lease = LeaseRow(f"G{i}", world.slice_id, "p", "s0",  # type: ignore[attr-defined]
                     WINDOW, "active", True, NOW)
    node = NodeRequest("n1", Resources.of(cores=1, memory_mib=256))
    return BookingRequest(lease=lease, topology=Topology((node,)))


def _book(booker: GroupBooker, req: BookingRequest) -> str:
    try:
        booker.book(req, timeout=60)
    except PlacementFailed:
        return "refused"
    return "granted"


def test_concurrent_requests_are_batched_and_never_overbook(
        uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, hosts=3, cores=4)
    booker = _booker(world, uow_factory)
    try:
        with ThreadPoolExecutor(16) as pool:
            results = list(pool.map(lambda i: _book(booker, _request(world, i)), range(20)))
    finally:
        booker.stop()
    assert results.count("granted") == 12 and results.count("refused") == 8
    assert booker.batches < 12  # several placements per transaction
    assert len(world.rows()) == 12
    world.assert_never_oversubscribed()
    with uow_factory() as uow:
        assert uow.inventory.free_nodes(Resources.of(cores=1), limit=10) == []


def test_a_failed_write_takes_the_batch_back(uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, hosts=1, cores=4)
    booker = _booker(world, uow_factory)
    try:
        booker.book(_request(world, 1), timeout=60)
        with pytest.raises(Exception, match="G1"):  # the same lease id again: the insert fails
            booker.book(_request(world, 1), timeout=60)
        for i in range(2, 5):
            booker.book(_request(world, i), timeout=60)  # the failed one holds nothing
    finally:
        booker.stop()
    assert len(world.rows()) == 4
