"""Aggregate: sites, nodes, enrollment tokens, desired state, slivers, links, commands.

Revision ID: 0002
Revises: 0001
Create Date: 2025-01-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from slicelab.store.types import UTCDateTime

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

ID = 40


def _ref(table: str, column: str, *, text: bool = False, pk: bool = False) -> sa.Column[object]:
    col_type: sa.types.TypeEngine[object] = sa.String(ID) if text else sa.Integer()
    return sa.Column(column, col_type, sa.ForeignKey(f"{table}.id", ondelete="CASCADE"),
                     primary_key=pk, nullable=False)


def upgrade() -> None:
    _sites_and_nodes()
    _slivers_and_links()
    op.create_table(
        "node_commands", sa.Column("id", sa.String(ID), primary_key=True),
        _ref("nodes", "node_id", text=True),
        sa.Column("sliver_id", sa.String(ID), nullable=False),
        sa.Column("argv", sa.JSON, nullable=False),
        sa.Column("timeout", sa.Float, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("finished", UTCDateTime, nullable=True),
        sa.Column("exit_code", sa.Integer, nullable=True),
        sa.Column("stdout", sa.Text, nullable=True),
        sa.Column("stderr", sa.Text, nullable=True),
    )
    op.create_index("ix_node_commands_node_id", "node_commands", ["node_id"])


def _sites_and_nodes() -> None:
    op.create_table(
        "sites", sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(32), nullable=False, unique=True),
        sa.Column("urn", sa.String(512), nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_table(
        "nodes", sa.Column("id", sa.String(ID), primary_key=True),
        sa.Column("name", sa.String(63), nullable=False, unique=True),
        _ref("sites", "site_id"),
        sa.Column("urn", sa.String(512), nullable=False),
        sa.Column("boot_state", sa.String(16), nullable=False),
        sa.Column("inventory", sa.JSON, nullable=False),
        sa.Column("host_ip", sa.String(64), nullable=True),
        sa.Column("last_seen", UTCDateTime, nullable=True),
        sa.Column("auth_failures", sa.Integer, nullable=False),
        sa.Column("sealed_key", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_index("ix_nodes_site_id", "nodes", ["site_id"])
    op.create_table(
        "enrollment_tokens", sa.Column("id", sa.Integer, primary_key=True),
        _ref("sites", "site_id"),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("node_name", sa.String(63), nullable=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("expires", UTCDateTime, nullable=False),
        sa.Column("used", UTCDateTime, nullable=True),
    )
    op.create_index("ix_enrollment_tokens_site_id", "enrollment_tokens", ["site_id"])
    op.create_table(
        "node_desired", _ref("nodes", "node_id", text=True, pk=True),
        sa.Column("generation", sa.Integer, nullable=False),
        sa.Column("digest", sa.String(64), nullable=False),
        sa.Column("document", sa.JSON, nullable=False),
        sa.Column("applied", sa.Integer, nullable=False),
    )


def _slivers_and_links() -> None:
    op.create_table(
        "slivers", sa.Column("id", sa.String(ID), primary_key=True),
        _ref("slices", "slice_id"), _ref("nodes", "node_id", text=True),
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("plan", sa.JSON, nullable=False),
        sa.Column("allocation_state", sa.String(32), nullable=False),
        sa.Column("operational_state", sa.String(32), nullable=False),
        sa.Column("reported_state", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("control_ip", sa.String(64), nullable=True),
        sa.Column("ssh_host", sa.String(255), nullable=True),
        sa.Column("ssh_port", sa.Integer, nullable=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.UniqueConstraint("slice_id", "client_id", name="uq_slivers_slice_client"),
    )
    op.create_index("ix_slivers_slice_id", "slivers", ["slice_id"])
    op.create_index("ix_slivers_node_id", "slivers", ["node_id"])
    op.create_table(
        "slice_links", sa.Column("id", sa.String(ID), primary_key=True),
        _ref("slices", "slice_id"),
        sa.Column("client_id", sa.String(63), nullable=False),
        sa.Column("vni", sa.Integer, nullable=False, unique=True),
        sa.Column("subnet", sa.String(43), nullable=False),
        sa.Column("capacity_mbps", sa.Integer, nullable=True),
        sa.Column("request", sa.JSON, nullable=False),
        sa.Column("sliver_ids", sa.JSON, nullable=False),
        sa.Column("state", sa.String(16), nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.UniqueConstraint("slice_id", "client_id", name="uq_slice_links_slice_client"),
    )
    op.create_index("ix_slice_links_slice_id", "slice_links", ["slice_id"])


def downgrade() -> None:
    for table in ("node_commands", "slice_links", "slivers", "node_desired",
                  "enrollment_tokens", "nodes", "sites"):
        op.drop_table(table)
