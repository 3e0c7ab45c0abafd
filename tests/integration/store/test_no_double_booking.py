"""No double booking, ever: 50 concurrent allocating clients, and a state machine of
allocate / renew / release, on SQLite and PostgreSQL, checked with a brute-force count."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test
from sqlalchemy import delete
from test_lease_world import World, one_node

from slicelab.domain.errors import InsufficientResources, PolicyViolation
from slicelab.services.allocation import allocate
from slicelab.services.leases import LeaseWindow, Renewal, renew_lease
from slicelab.services.topology_apply import release_slice
from slicelab.store.leases import bookings, leases
from slicelab.store.node_tables import slice_links, slivers
from slicelab.store.uow import UnitOfWorkFactory

CLIENTS = 50


def _client(world: World, n: int, when: LeaseWindow, results: list[str],
            barrier: threading.Barrier) -> None:
    barrier.wait()
    try:
        with world.uow_factory() as uow:
            allocate(uow, world.ctx, world.caller, "p", f"s{n}", one_node(), when=when)
        results.append("granted")
    except InsufficientResources:
        results.append("refused")


def test_fifty_concurrent_clients_get_exactly_what_fits(uow_factory: UnitOfWorkFactory) -> None:
    # 3 hosts x 4 cores; half the clients want one window, half a later one: 12 fit in each.
    world = World(uow_factory, slices=CLIENTS)
    base = datetime.now(UTC) + timedelta(hours=1)
    windows = [LeaseWindow(start=base, duration=timedelta(hours=1)),
               LeaseWindow(start=base + timedelta(hours=2), duration=timedelta(hours=1))]
    results: list[str] = []
    barrier = threading.Barrier(CLIENTS)
    threads = [threading.Thread(target=_client, args=(world, n, windows[n % 2], results,
                                                      barrier)) for n in range(CLIENTS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == CLIENTS
    assert results.count("granted") == 24
    assert len(world.rows()) == 24
    world.assert_never_oversubscribed()


SLICES = 5


class Allocations(RuleBasedStateMachine):
    """Allocate, renew and release at random; no host is ever oversubscribed, and a refused
    one-node request really fits on no host."""

    world: World

    def __init__(self) -> None:
        super().__init__()
        with self.world.uow_factory() as uow:
            conn = uow.leases.leases.connection
            for table in (bookings, leases, slice_links, slivers):
                conn.execute(delete(table))
            uow.commit()
        self.held: dict[int, str] = {}  # slice index -> lease id
        self.start = datetime.now(UTC) + timedelta(minutes=5)

    @rule(k=st.integers(0, SLICES - 1), cores=st.integers(1, 4), memory=st.sampled_from(
        [256, 1024, 3072]), offset=st.integers(0, 4), hours=st.integers(1, 3))
    def allocate(self, k: int, cores: int, memory: int, offset: int, hours: int) -> None:
        if k in self.held:
            return
        when = LeaseWindow(start=self.start + timedelta(hours=offset),
                           duration=timedelta(hours=hours))
        try:
            with self.world.uow_factory() as uow:
                done = allocate(uow, self.world.ctx, self.world.caller, "p", f"s{k}",
                                one_node(cores=cores, memory=memory), when=when)
            self.held[k] = done.lease.id
        except InsufficientResources:
            assert not self._fits_somewhere(cores * 1000, memory, when)

    def _fits_somewhere(self, cpu: int, mem: int, when: LeaseWindow) -> bool:
        assert when.start is not None and when.duration is not None
        start, end = when.start, when.start + when.duration
        rows = [r for r in self.world.rows() if r.start < end and start < r.end]
        for host, (cap_cpu, cap_mem) in self.world.capacity.items():
            mine = [r for r in rows if f"host{int(r.node_id[2:], 16)}" == host]
            instants = {start} | {r.start for r in mine if r.start > start}
            if all(sum(r.cpu_milli for r in mine if r.start <= t < r.end) + cpu <= cap_cpu
                   and sum(r.memory_mib for r in mine if r.start <= t < r.end) + mem <= cap_mem
                   for t in instants):
                return True
        return False

    @rule(k=st.integers(0, SLICES - 1), hours=st.integers(1, 3))
    def renew(self, k: int, hours: int) -> None:
        if k not in self.held:
            return
        try:
            with self.world.uow_factory() as uow:
                item = uow.slices.get("p", f"s{k}")
                renew_lease(uow, item, self.held[k], Renewal(by=timedelta(hours=hours)))
        except (InsufficientResources, PolicyViolation):
            pass

    @rule(k=st.integers(0, SLICES - 1))
    def release(self, k: int) -> None:
        if k not in self.held:
            return
        with self.world.uow_factory() as uow:
            release_slice(uow, self.world.ctx, self.world.caller, "p", f"s{k}")
        del self.held[k]

    @invariant()
    def never_oversubscribed(self) -> None:
        self.world.assert_never_oversubscribed()


def test_allocate_renew_release_never_oversubscribes(uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, hosts=2, slices=SLICES)
    machine: Any = type("BoundAllocations", (Allocations,), {"world": world})
    run_state_machine_as_test(machine, settings=settings(
        max_examples=12, stateful_step_count=12, deadline=None,
        suppress_health_check=list(HealthCheck)))


@pytest.mark.parametrize("cores", [5])
def test_a_request_bigger_than_any_host_is_refused(uow_factory: UnitOfWorkFactory,
                                                   cores: int) -> None:
    world = World(uow_factory, hosts=2)
    with world.uow_factory() as uow, pytest.raises(InsufficientResources) as info:
        allocate(uow, world.ctx, world.caller, "p", "s0", one_node(cores=cores),
                 when=LeaseWindow(duration=timedelta(hours=1)))
    assert "n1" in str(info.value) and "capacity" in str(info.value)
    assert world.rows() == []
