"""Repositories of the inventory index and the heartbeat path.

:class:`InventoryRepository` keeps ``node_capacity`` / ``node_devices`` (see
:mod:`.inventory_tables`) and answers the free-node query from their indexes.
:class:`HeartbeatRepository` writes a batch of heartbeats in one statement: an
``UPDATE ... FROM unnest(...)`` on PostgreSQL, the driver's ``executemany`` on SQLite.
A heartbeat never moves ``last_seen`` back.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import (
    Connection,
    delete,
    exists,
    insert,
    select,
    text,
    true,
)

from slicelab.domain.resources import Resources

from .base import Repository
from .bulk import rows_json
from .inventory_tables import node_capacity, node_devices
from .node_tables import nodes, sites

__all__ = ["CapacityRow", "HeartbeatRepository", "InventoryRepository", "pg_set_free"]


@dataclass(frozen=True, slots=True)
class CapacityRow:
    """One node's line of the index: capacity, and what is free of it now."""

    node_id: str
    site_id: int
    available: bool
    capacity: Resources
    free: Resources


def _capacity_values(row: CapacityRow) -> dict[str, Any]:
    c, f = row.capacity, row.free
    return {"node_id": row.node_id, "site_id": row.site_id, "available": row.available,
            "cpu_milli": c.cpu_milli, "memory_mib": c.memory_mib, "disk_gib": c.disk_gib,
            "free_cpu_milli": f.cpu_milli, "free_memory_mib": f.memory_mib,
            "free_disk_gib": f.disk_gib}


def _device_values(row: CapacityRow) -> list[dict[str, Any]]:
    free = row.free.device_counts
    return [{"node_id": row.node_id, "device": name, "free": max(0, free.get(name, 0))}
            for name, _ in row.capacity.devices]


def pg_set_free(rows: Sequence[CapacityRow]) -> tuple[str, tuple[str, str]]:
    """The statement of :meth:`InventoryRepository.set_free` on PostgreSQL, with its
    parameters."""
    rows = sorted(rows, key=lambda r: r.node_id)
    return _PG_SET_FREE, (
        rows_json([r.node_id, r.free.cpu_milli, r.free.memory_mib, r.free.disk_gib,
                   r.available] for r in rows),
        rows_json([d["node_id"], d["device"], d["free"]]
                  for r in rows for d in _device_values(r)))


class InventoryRepository(Repository):
    def put(self, rows: Sequence[CapacityRow]) -> None:
        """Replace the index rows of these nodes (insert when new)."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: r.node_id)
        self._lock(rows)
        ids = [r.node_id for r in rows]
        for start in range(0, len(ids), 500):
            chunk = ids[start:start + 500]
            self.connection.execute(delete(node_devices).where(node_devices.c.node_id.in_(chunk)))
            self.connection.execute(delete(node_capacity)
                                    .where(node_capacity.c.node_id.in_(chunk)))
        self.connection.execute(insert(node_capacity), [_capacity_values(r) for r in rows])
        devices = [d for r in rows for d in _device_values(r)]
        if devices:
            self.connection.execute(insert(node_devices), devices)

    def set_free(self, rows: Sequence[CapacityRow]) -> None:
        """Update what is free of nodes already in the index: one statement per table on
        SQLite, one in all on PostgreSQL (which locks the index rows in id order first), the
        rows as one JSON parameter (see :mod:`.bulk`)."""
        if not rows:
            return
        rows = sorted(rows, key=lambda r: r.node_id)
        if self.connection.dialect.name == "postgresql":
            self.connection.exec_driver_sql(*pg_set_free(rows))
            return
        self.connection.exec_driver_sql(_SQLITE_FREE, [
            (r.free.cpu_milli, r.free.memory_mib, r.free.disk_gib, r.available, r.node_id)
            for r in rows])
        devices = [(d["free"], d["node_id"], d["device"]) for r in rows for d in _device_values(r)]
        if devices:
            self.connection.exec_driver_sql(_SQLITE_DEVICES_FREE, devices)

    def _lock(self, rows: Sequence[CapacityRow]) -> None:
        """Lock the index rows in id order before changing them (PostgreSQL): two transactions
        that rewrite the same nodes then queue instead of deadlocking on a different order."""
        if self.connection.dialect.name != "postgresql":
            return
        self.connection.execute(_PG_LOCK_INDEX, {"ids": [r.node_id for r in rows]}).all()

    def remove(self, node_ids: Collection[str]) -> None:
        ids = list(node_ids)
        if ids:
            self.connection.execute(delete(node_devices).where(node_devices.c.node_id.in_(ids)))
            self.connection.execute(delete(node_capacity).where(node_capacity.c.node_id.in_(ids)))

    def indexed_ids(self) -> set[str]:
        return set(self.connection.execute(select(node_capacity.c.node_id)).scalars())

    def free_nodes(self, need: Resources, *, site_id: int | None = None, limit: int = 10,
                   claim: bool = False) -> list[tuple[str, int, int]]:
        """Available nodes whose free CPU, memory and devices cover ``need``, by id (the scan
        stops at ``limit`` matches; best fit is placement's job): ``(node id, free millicores,
        free MiB)``.

        With ``claim`` the nodes' rows (``nodes``) are locked until the transaction ends and
        rows another transaction holds are skipped (PostgreSQL ``FOR UPDATE SKIP LOCKED``;
        SQLite's write transactions are exclusive already): concurrent bookers each get
        nodes of their own and never wait here.
        """
        nc = node_capacity.c
        query = (select(nc.node_id, nc.free_cpu_milli, nc.free_memory_mib)
                 .where(nc.available == true(), nc.free_cpu_milli >= need.cpu_milli,
                        nc.free_memory_mib >= need.memory_mib, nc.free_disk_gib >= need.disk_gib)
                 .order_by(nc.node_id).limit(limit))
        if claim:
            query = (query.join(nodes, nodes.c.id == nc.node_id)
                     .with_for_update(of=nodes, skip_locked=True))
        if site_id is not None:
            query = query.where(nc.site_id == site_id)
        for name, count in need.devices:
            nd = node_devices.c
            query = query.where(exists().where(nd.node_id == nc.node_id, nd.device == name,
                                               nd.free >= count))
        return [(r[0], r[1], r[2]) for r in self.connection.execute(query)]

    def raw_inventories(self, node_ids: Collection[str]) -> dict[str, dict[str, Any]]:
        """The inventory documents of ``node_ids`` as their agents reported them."""
        ids, found = list(node_ids), {}
        for start in range(0, len(ids), 500):
            query = select(nodes.c.id, nodes.c.inventory).where(
                nodes.c.id.in_(ids[start:start + 500]))
            found.update({r[0]: dict(r[1]) for r in self.connection.execute(query)})
        return found

    def site_ids(self) -> dict[str, int]:
        return {r[0]: r[1] for r in self.connection.execute(select(sites.c.name, sites.c.id))}


_PG_LOCK_INDEX = text(
    "SELECT node_id FROM node_capacity WHERE node_id = ANY(CAST(:ids AS text[])) "
    "ORDER BY node_id FOR UPDATE")

# The index rows are locked in id order (``locked``, read whole by the one-time filter of
# both updates before either changes a row), then both tables are rewritten.
_PG_SET_FREE = (
    "WITH v AS MATERIALIZED (SELECT e->>0 AS id, CAST(e->>1 AS integer) AS cpu, "
    "CAST(e->>2 AS integer) AS mem, CAST(e->>3 AS integer) AS disk, "
    "CAST(e->>4 AS boolean) AS up FROM json_array_elements(CAST(%s AS json)) AS e), "
    "locked AS MATERIALIZED (SELECT node_id FROM node_capacity "
    "WHERE node_id = ANY(ARRAY(SELECT id FROM v)) ORDER BY node_id FOR UPDATE), "
    "devices AS (UPDATE node_devices AS d SET free = CAST(e->>2 AS integer) "
    "FROM json_array_elements(CAST(%s AS json)) AS e "
    "WHERE d.node_id = ANY(ARRAY(SELECT id FROM v)) AND d.node_id = e->>0 "
    "AND d.device = e->>1 AND (SELECT count(*) FROM locked) >= 0) "
    "UPDATE node_capacity AS c SET free_cpu_milli = v.cpu, free_memory_mib = v.mem, "
    "free_disk_gib = v.disk, available = v.up FROM v "
    "WHERE c.node_id = ANY(ARRAY(SELECT id FROM v)) AND c.node_id = v.id "
    "AND (SELECT count(*) FROM locked) >= 0")

# SQLite: the driver's executemany, values in the stored form (no per-row processing).
_SQLITE_FREE = ("UPDATE node_capacity SET free_cpu_milli = ?, free_memory_mib = ?, "
                "free_disk_gib = ?, available = ? WHERE node_id = ?")

_SQLITE_DEVICES_FREE = "UPDATE node_devices SET free = ? WHERE node_id = ? AND device = ?"

_PG_TOUCH = text(
    "UPDATE nodes AS n SET last_seen = v.seen "
    "FROM unnest(CAST(:ids AS text[]), CAST(:seen AS timestamptz[])) AS v(id, seen) "
    "WHERE n.id = v.id AND (n.last_seen IS NULL OR n.last_seen < v.seen)")


# SQLite: the driver's executemany with the time already in the stored form (what the
# UTCDateTime column type writes), sorted by id for locality: no per-row type processing.
_SQLITE_TOUCH = ("UPDATE nodes SET last_seen = ? WHERE id = ? "
                 "AND (last_seen IS NULL OR last_seen < ?)")


def _sqlite_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(tzinfo=None).isoformat(sep=" ",
                                                                   timespec="microseconds")


class HeartbeatRepository(Repository):
    def __init__(self, connection: Connection) -> None:
        super().__init__(connection)
        self._postgres = connection.dialect.name == "postgresql"

    def touch(self, beats: Iterable[tuple[str, datetime]]) -> None:
        """Set ``last_seen`` of each node to its time, unless it is later already."""
        batch = list(beats)
        if not batch:
            return
        if self._postgres:
            self.connection.execute(_PG_TOUCH, {"ids": [b[0] for b in batch],
                                                "seen": [b[1].astimezone(UTC) for b in batch]})
            return
        texts: dict[datetime, str] = {}  # most beats of a batch share a few instants
        rows = [(texts.get(seen) or texts.setdefault(seen, _sqlite_time(seen)), node_id)
                for node_id, seen in sorted(batch)]
        self.connection.exec_driver_sql(_SQLITE_TOUCH, [(t, i, t) for t, i in rows])
