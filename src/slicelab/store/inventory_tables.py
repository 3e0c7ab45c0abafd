"""The aggregate's inventory index (SQLAlchemy Core): per node its capacity and what is free
now, denormalised from ``nodes`` (inventory, boot state) and the slivers or bookings on it, so
that "free nodes with at least C cores and M MiB at site S with device D" is one index range
scan at a million nodes. The migration ``0004_inventory`` builds them.

* ``node_capacity`` — one row per node: ``site_id`` (copied from ``nodes``), ``available``
  (the node accepts slivers), capacity and free CPU (millicores), memory (MiB) and disk (GiB).
  Indexed on (site_id, available, free_cpu_milli, free_memory_mib, node_id) and on the same
  without the site: the query is a range scan in best-fit order that never reads the table.
* ``node_devices`` — the named devices of each node with their free count.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, ForeignKey, Index, Integer, String, Table

from .node_tables import ID
from .tables import metadata

__all__ = ["node_capacity", "node_devices"]

node_capacity = Table(
    "node_capacity", metadata,
    Column("node_id", String(ID), ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True),
    Column("site_id", Integer, ForeignKey("sites.id", ondelete="CASCADE"), nullable=False),
    Column("available", Boolean, nullable=False),
    Column("cpu_milli", Integer, nullable=False),
    Column("memory_mib", Integer, nullable=False),
    Column("disk_gib", Integer, nullable=False),
    Column("free_cpu_milli", Integer, nullable=False),
    Column("free_memory_mib", Integer, nullable=False),
    Column("free_disk_gib", Integer, nullable=False),
    Index("ix_node_capacity_site_free", "site_id", "available", "free_cpu_milli",
          "free_memory_mib", "node_id"),
    Index("ix_node_capacity_free", "available", "free_cpu_milli", "free_memory_mib", "node_id"),
)

node_devices = Table(
    "node_devices", metadata,
    Column("node_id", String(ID), ForeignKey("nodes.id", ondelete="CASCADE"), primary_key=True),
    Column("device", String(63), primary_key=True),
    Column("free", Integer, nullable=False),
    Index("ix_node_devices_device", "device", "node_id"),
)
