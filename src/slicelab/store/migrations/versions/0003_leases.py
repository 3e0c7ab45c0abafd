"""Leases: leases, bookings per host, project quotas, site limits.

Revision ID: 0003
Revises: 0002
Create Date: 2025-01-03
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from slicelab.store.types import UTCDateTime

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

ID = 40


def _ref(table: str, column: str, *, text: bool = False, pk: bool = False) -> sa.Column[object]:
    col_type: sa.types.TypeEngine[Any] = sa.String(ID) if text else sa.Integer()
    return sa.Column(column, col_type, sa.ForeignKey(f"{table}.id", ondelete="CASCADE"),
                     primary_key=pk, nullable=False)


def upgrade() -> None:
    op.create_table(
        "leases", sa.Column("id", sa.String(ID), primary_key=True),
        _ref("slices", "slice_id"),
        sa.Column("start", UTCDateTime, nullable=False),
        sa.Column("end", UTCDateTime, nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("provision", sa.Boolean, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_index("ix_leases_slice_id", "leases", ["slice_id"])
    op.create_index("ix_leases_end", "leases", ["end"])
    _bookings()
    _policies()


def _bookings() -> None:
    op.create_table(
        "bookings", sa.Column("id", sa.Integer, primary_key=True),
        _ref("leases", "lease_id", text=True), _ref("nodes", "node_id", text=True),
        sa.Column("sliver_id", sa.String(ID), nullable=True),
        sa.Column("start", UTCDateTime, nullable=False),
        sa.Column("end", UTCDateTime, nullable=False),
        sa.Column("cpu_milli", sa.Integer, nullable=False),
        sa.Column("memory_mib", sa.Integer, nullable=False),
        sa.Column("disk_gib", sa.Integer, nullable=False),
        sa.Column("bandwidth_mbps", sa.Integer, nullable=False),
        sa.Column("devices", sa.JSON, nullable=False),
        sa.Column("exclusive", sa.Boolean, nullable=False),
        sa.Column("uplink_mbps", sa.Integer, nullable=False),
    )
    op.create_index("ix_bookings_lease_id", "bookings", ["lease_id"])
    op.create_index("ix_bookings_sliver_id", "bookings", ["sliver_id"])
    op.create_index("ix_bookings_node_window", "bookings", ["node_id", "end", "start"])


def _policies() -> None:
    op.create_table(
        "project_quotas", _ref("projects", "project_id", pk=True),
        sa.Column("cores", sa.Float, nullable=True),
        sa.Column("memory_mib", sa.Integer, nullable=True),
        sa.Column("slivers", sa.Integer, nullable=True),
        sa.Column("concurrent_leases", sa.Integer, nullable=True),
        sa.Column("longest_lease_s", sa.Integer, nullable=True),
        sa.Column("book_ahead_s", sa.Integer, nullable=True),
    )
    op.create_table(
        "site_limits", _ref("sites", "site_id", pk=True),
        sa.Column("slivers_per_slice", sa.Integer, nullable=True),
        sa.Column("cores_per_sliver", sa.Float, nullable=True),
        sa.Column("memory_mib_per_sliver", sa.Integer, nullable=True),
        sa.Column("longest_lease_s", sa.Integer, nullable=True),
        sa.Column("book_ahead_s", sa.Integer, nullable=True),
        sa.Column("one_sliver_per_slice_per_node", sa.Boolean, nullable=False),
    )


def downgrade() -> None:
    for table in ("site_limits", "project_quotas", "bookings", "leases"):
        op.drop_table(table)
