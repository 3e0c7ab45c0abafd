"""The aggregate's repositories on SQLite and PostgreSQL."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from slicelab.domain.errors import Conflict, NotFound
from slicelab.domain.nodes import BootState, Inventory, Node, Site, node_urn, site_urn
from slicelab.store.aggregate import CommandRow, DesiredRow
from slicelab.store.uow import UnitOfWorkFactory

NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _setup(uow_factory: UnitOfWorkFactory) -> Node:
    node = Node(id="n-1", name="host1", site="lab", urn=node_urn("sl.test", "host1"),
                inventory=Inventory(cores=2, memory_mib=1024, host_ip="172.31.250.2"))
    with uow_factory() as uow:
        uow.aggregate.sites.add(Site(name="lab", urn=site_urn("sl.test", "lab"), created=NOW))
        uow.aggregate.nodes.add(node, sealed_key="sealed", created=NOW)
        uow.commit()
    return node


def test_sites_and_nodes_round_trip(uow_factory: UnitOfWorkFactory) -> None:
    node = _setup(uow_factory)
    with uow_factory() as uow:
        assert uow.aggregate.nodes.find("n-1") == node
        assert uow.aggregate.nodes.sealed_key("n-1") == "sealed"
        moved = replace(node.seen(NOW), boot_state=BootState.BOOT, auth_failures=0)
        uow.aggregate.nodes.save(moved)
        uow.commit()
    with uow_factory() as uow:
        assert uow.aggregate.nodes.by_name("host1") == moved
        assert [s.name for s in uow.aggregate.sites.list()] == ["lab"]
        with pytest.raises(NotFound):
            uow.aggregate.nodes.by_name("nope")
        with pytest.raises(Conflict):
            uow.aggregate.sites.add(Site(name="lab", urn=site_urn("sl.test", "lab"),
                                         created=NOW))


def test_an_enrollment_token_is_used_once(uow_factory: UnitOfWorkFactory) -> None:
    _setup(uow_factory)
    with uow_factory() as uow:
        uow.aggregate.enrollments.add(site="lab", token_hash="h" * 64, node_name=None,
                                      created=NOW, expires=NOW + timedelta(hours=1))
        row = uow.aggregate.enrollments.by_hash("h" * 64)
        assert row is not None and row.site == "lab" and row.used is None
        assert uow.aggregate.enrollments.use(row.id, NOW)
        assert not uow.aggregate.enrollments.use(row.id, NOW)
        uow.commit()
        used = uow.aggregate.enrollments.by_hash("h" * 64)
        assert used is not None and used.used == NOW


def test_desired_documents_and_commands(uow_factory: UnitOfWorkFactory) -> None:
    _setup(uow_factory)
    with uow_factory() as uow:
        assert uow.aggregate.desired.get("n-1") is None
        uow.aggregate.desired.put("n-1", DesiredRow(1, "d1", {"generation": 1}, 0))
        uow.aggregate.desired.put("n-1", DesiredRow(2, "d2", {"generation": 2}, 1))
        uow.aggregate.commands.add(CommandRow("c-1", "n-1", "s-1", ("true",), 5.0), created=NOW)
        uow.commit()
    with uow_factory() as uow:
        assert uow.aggregate.desired.get("n-1", lock=True) == \
            DesiredRow(2, "d2", {"generation": 2}, 1)
        assert [c.id for c in uow.aggregate.commands.pending("n-1")] == ["c-1"]
        uow.aggregate.commands.finish("c-1", when=NOW, exit_code=0, stdout="x", stderr="")
        uow.commit()
        assert uow.aggregate.commands.pending("n-1") == []
        done = uow.aggregate.commands.find("c-1")
        assert done is not None and (done.exit_code, done.stdout) == (0, "x")
