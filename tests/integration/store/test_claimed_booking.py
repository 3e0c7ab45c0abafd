"""Allocation through the engine stays exact: concurrent clients on SQLite and PostgreSQL, a
host free only in the window asked (its headroom in the index is nothing), and a project's
quota under concurrency, checked within a batch against what the batch itself books."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

from test_lease_world import World, one_node

from slicelab.domain.errors import InsufficientResources, PolicyViolation
from slicelab.domain.quotas import ProjectQuota
from slicelab.domain.resources import Resources
from slicelab.services.allocation import allocate
from slicelab.services.inventory import index_nodes
from slicelab.services.leases import LeaseWindow
from slicelab.store.uow import UnitOfWorkFactory


def _indexed(world: World) -> World:
    with world.uow_factory() as uow:
        index_nodes(uow)
        uow.commit()
    return world


def _allocate(world: World, n: int, when: LeaseWindow, cores: float = 1) -> str:
    try:
        with world.uow_factory() as uow:
            allocate(uow, world.ctx, world.caller, "p", f"s{n}", one_node(cores=cores),
                     when=when)
        return "granted"
    except InsufficientResources:
        return "refused"
    except PolicyViolation:
        return "over quota"


def _concurrently(world: World, count: int, when: LeaseWindow, cores: float = 1) -> list[str]:
    results: list[str] = []
    barrier = threading.Barrier(count)

    def client(n: int) -> None:
        barrier.wait()
        results.append(_allocate(world, n, when, cores))

    threads = [threading.Thread(target=client, args=(n,)) for n in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == count
    return results


def test_allocations_keep_the_index_current(uow_factory: UnitOfWorkFactory) -> None:
    world = _indexed(World(uow_factory, hosts=3, slices=3))
    for n in range(3):
        assert _allocate(world, n, LeaseWindow(duration=timedelta(hours=1)), cores=4) \
            == "granted"
    with uow_factory() as uow:
        assert uow.inventory.free_nodes(Resources.of(cores=1)) == []
    world.assert_never_oversubscribed()


def test_concurrent_clients_never_oversubscribe(uow_factory: UnitOfWorkFactory) -> None:
    # 12 hosts x 4 cores, 30 clients of 2 cores each: exactly 24 fit.
    world = _indexed(World(uow_factory, hosts=12, slices=30))
    results = _concurrently(world, 30, LeaseWindow(duration=timedelta(hours=1)), cores=2)
    assert results.count("granted") == 24
    assert len(world.rows()) == 24
    world.assert_never_oversubscribed()


def test_a_host_free_only_in_the_window_is_found(uow_factory: UnitOfWorkFactory) -> None:
    # One host, booked whole from in 3 hours: its headroom in the index is nothing, yet it is
    # free for the next hour.
    world = _indexed(World(uow_factory, hosts=1, slices=2))
    later = datetime.now(UTC) + timedelta(hours=3)
    assert _allocate(world, 0, LeaseWindow(start=later, duration=timedelta(hours=1)),
                     cores=4) == "granted"
    assert _allocate(world, 1, LeaseWindow(duration=timedelta(hours=1)), cores=4) == "granted"
    world.assert_never_oversubscribed()


def test_a_project_quota_holds_under_concurrency(uow_factory: UnitOfWorkFactory) -> None:
    world = _indexed(World(uow_factory, hosts=10, slices=12))
    with world.uow_factory() as uow:
        uow.leases.quotas.put("p", ProjectQuota(cores=5))
        uow.commit()
    results = _concurrently(world, 12, LeaseWindow(duration=timedelta(hours=1)))
    assert results.count("granted") == 5
    assert results.count("over quota") == 7
    assert len(world.rows()) == 5
