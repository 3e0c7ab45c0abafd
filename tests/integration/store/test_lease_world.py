"""A small aggregate in the database for the lease tests: an admin, project ``p`` with slices
``s0``..``sN``, site ``lab`` and booted hosts ``host0``..; plus the independent check that no
host is oversubscribed at any instant (a brute force over booking starts, not the calendar's
sweep line).
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from slicelab.domain.members import Member, PlatformRole
from slicelab.domain.nodes import BootState, Inventory, Node, Site, node_urn, site_urn
from slicelab.domain.projects import Project, ProjectRole
from slicelab.domain.roles import Caller
from slicelab.domain.slices import Slice, slice_urn
from slicelab.services.provisioning import AggregateContext, KeyBox
from slicelab.store.leases import bookings, leases
from slicelab.store.uow import UnitOfWorkFactory

NOW = datetime.now(UTC)


class World:
    def __init__(self, uow_factory: UnitOfWorkFactory, *, hosts: int = 3, cores: int = 4,
                 memory_mib: int = 4096, slices: int = 4) -> None:
        self.uow_factory = uow_factory
        self.capacity = {f"host{i}": (cores * 1000, memory_mib) for i in range(hosts)}
        self.ctx = AggregateContext(authority="slicelab", keybox=KeyBox(b"k" * 32))
        now = datetime.now(UTC)
        with uow_factory() as uow:
            admin = uow.members.add(Member(name="root", email="root@example.org", created=now,
                                           can_lead=True, roles=frozenset({PlatformRole.ADMIN})))
            project = Project(name="p", description="", created=now)
            project.add("root", ProjectRole.PI)
            project = uow.projects.add(project)
            uow.aggregate.sites.add(Site(name="lab", urn=site_urn("slicelab", "lab"), created=now))
            for i in range(hosts):
                self._host(uow, i, cores, memory_mib, now)
            for i in range(slices):
                self._slice(uow, project, f"s{i}", now)
            uow.commit()
        self.caller = Caller(member=admin)

    @staticmethod
    def _host(uow: Any, i: int, cores: int, memory_mib: int, now: datetime) -> None:
        inventory = Inventory(cores=cores, memory_mib=memory_mib, disk_gib=100,
                              host_ip=f"172.31.9.{i + 2}")
        node = Node(id=f"n-{i:04x}", name=f"host{i}", site="lab",
                    urn=node_urn("slicelab", f"host{i}"), boot_state=BootState.BOOT,
                    inventory=inventory, host_ip=inventory.host_ip)
        uow.aggregate.nodes.add(node, sealed_key="unused", created=now)

    @staticmethod
    def _slice(uow: Any, project: Project, name: str, now: datetime) -> None:
        assert project.id is not None
        item = Slice(project="p", name=name, urn=slice_urn("slicelab", "p", name), created=now,
                     expires=now + timedelta(days=7), creator="root", members={"root"})
        uow.slices.add(item, project_id=project.id)

    def rows(self) -> list[Any]:
        """Every booking of an active lease, with its host's name."""
        with self.uow_factory() as uow:
            conn = uow.leases.leases.connection
            query = (select(bookings, leases.c.state)
                     .join(leases, leases.c.id == bookings.c.lease_id)
                     .where(leases.c.state == "active"))
            return list(conn.execute(query))

    def assert_never_oversubscribed(self) -> None:
        rows = self.rows()
        for row in rows:
            host = f"host{int(row.node_id[2:], 16)}"
            live = [r for r in rows if r.node_id == row.node_id
                    and r.start <= row.start < r.end]
            cpu, mem = self.capacity[host]
            assert sum(r.cpu_milli for r in live) <= cpu, f"{host} over cpu at {row.start}"
            assert sum(r.memory_mib for r in live) <= mem, f"{host} over memory at {row.start}"
            if any(r.exclusive for r in live):
                assert len(live) == 1, f"{host} shared while held whole at {row.start}"


def one_node(name: str = "n1", cores: float = 1, memory: int = 256) -> dict[str, Any]:
    return {"nodes": [{"name": name, "cores": cores, "memory": memory}]}


@pytest.fixture
def world(uow_factory: UnitOfWorkFactory) -> Iterator[World]:
    yield World(uow_factory)


def test_the_world_starts_empty_and_consistent(world: World) -> None:
    assert world.rows() == []
    world.assert_never_oversubscribed()
