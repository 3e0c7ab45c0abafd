"""The free-node index and the batched heartbeat writes, on SQLite and PostgreSQL."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select

from slicelab.domain.calendar import Window
from slicelab.domain.inventory import Host
from slicelab.domain.resources import Resources
from slicelab.services.heartbeats import HeartbeatBatcher, SqlHeartbeatSink
from slicelab.services.inventory import SqlFreeHosts, index_nodes
from slicelab.store.node_tables import nodes
from slicelab.store.uow import UnitOfWorkFactory

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "api"))
from test_resources import seed

NOW = datetime.now(UTC).replace(microsecond=0)  # every use below passes it explicitly


def _seed(uow_factory: UnitOfWorkFactory) -> None:
    from slicelab.domain.members import Member

    with uow_factory() as uow:
        uow.members.add(Member(name="root", email="root@example.org", created=NOW))
        uow.commit()
    seed(uow_factory, NOW)


def _last_seen(uow_factory: UnitOfWorkFactory) -> dict[str, object]:
    with uow_factory() as uow:
        rows = uow.aggregate.nodes.connection.execute(select(nodes.c.id, nodes.c.last_seen))
        return {r[0]: r[1] for r in rows}


def test_free_node_query_uses_headroom_site_and_devices(uow_factory: UnitOfWorkFactory) -> None:
    _seed(uow_factory)
    with uow_factory() as uow:
        assert index_nodes(uow, now=NOW) == 3
        uow.commit()
    with uow_factory() as uow:
        sites = uow.inventory.site_ids()
        free = uow.inventory.free_nodes
        # n1 has 8 cores, 4 booked later: headroom 4; n2 4 cores; n3 is in debug
        assert free(Resources.of(cores=2)) == [("n-n1", 4000, 8192), ("n-n2", 4000, 8192)]
        assert free(Resources.of(cores=5)) == []
        assert free(Resources.of(cores=1, devices=["gpu"])) == [("n-n1", 4000, 8192)]
        assert free(Resources.of(cores=1), site_id=sites["edge"]) == []
        assert free(Resources.of(cores=1), site_id=sites["lab"], limit=1) == \
            [("n-n1", 4000, 8192)]
    with uow_factory() as uow:  # re-indexing one node replaces its row only
        index_nodes(uow, ["n-n2", "n-gone"], now=NOW + timedelta(hours=4))
        assert uow.inventory.indexed_ids() == {"n-n1", "n-n2", "n-n3"}
        uow.commit()
    hosts = {i: Host(i, i, "lab", Resources.of(cores=8)) for i in ("n-n1", "n-n2")}
    window = Window(NOW, NOW + timedelta(hours=1))
    with uow_factory() as uow:
        seam = SqlFreeHosts(uow_factory, hosts.__getitem__, uow.inventory.site_ids())
    assert [h.id for h in seam.free_hosts(Resources.of(cores=3), window, site="lab")] == \
        ["n-n1", "n-n2"]
    assert seam.free_hosts(Resources.of(cores=1), window, site="mars") == []


def test_batched_heartbeats_reach_the_database_and_never_go_back(
        uow_factory: UnitOfWorkFactory) -> None:
    _seed(uow_factory)
    batcher = HeartbeatBatcher(SqlHeartbeatSink(uow_factory, chunk=2), period=0.05)
    later = NOW + timedelta(minutes=5)
    batcher.record("n-n2", later)
    batcher.record("n-n1", NOW - timedelta(hours=2))  # older than what is stored
    batcher.record("n-unknown", later)  # a node removed meanwhile is ignored
    assert batcher.flush() == 3
    seen = _last_seen(uow_factory)
    assert seen["n-n2"] == later and seen["n-n1"] == NOW
    batcher.start()
    try:
        start = time.monotonic()
        batcher.record("n-n3", later)
        while _last_seen(uow_factory)["n-n3"] != later:
            assert time.monotonic() - start < 1.0, "heartbeat not written within 1 s"
            time.sleep(0.01)
    finally:
        batcher.stop()
    assert batcher.stats.written == 4 and batcher.stats.quantile(0.99) < 1.0
