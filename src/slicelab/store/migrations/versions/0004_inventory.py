"""Inventory index: per-node capacity and free capacity, per-node devices, their indexes.

Revision ID: 0004
Revises: 0003
Create Date: 2025-01-04
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

ID = 40


def _node_ref() -> sa.Column[str]:
    return sa.Column("node_id", sa.String(ID), sa.ForeignKey("nodes.id", ondelete="CASCADE"),
                     primary_key=True)


def upgrade() -> None:
    op.create_table(
        "node_capacity", _node_ref(),
        sa.Column("site_id", sa.Integer, sa.ForeignKey("sites.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("available", sa.Boolean, nullable=False),
        *(sa.Column(name, sa.Integer, nullable=False)
          for name in ("cpu_milli", "memory_mib", "disk_gib", "free_cpu_milli",
                       "free_memory_mib", "free_disk_gib")),
    )
    op.create_index("ix_node_capacity_site_free", "node_capacity",
                    ["site_id", "available", "free_cpu_milli", "free_memory_mib", "node_id"])
    op.create_index("ix_node_capacity_free", "node_capacity",
                    ["available", "free_cpu_milli", "free_memory_mib", "node_id"])
    op.create_table(
        "node_devices", _node_ref(),
        sa.Column("device", sa.String(63), primary_key=True),
        sa.Column("free", sa.Integer, nullable=False),
    )
    op.create_index("ix_node_devices_device", "node_devices", ["device", "node_id"])


def downgrade() -> None:
    op.drop_table("node_devices")
    op.drop_table("node_capacity")
