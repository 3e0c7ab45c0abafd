"""Clearinghouse: members, keys, tokens, projects, slices, audit log.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

from slicelab.store.types import UTCDateTime

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _id() -> sa.Column[int]:
    return sa.Column("id", sa.Integer, primary_key=True)


def _ref(table: str, column: str, *, pk: bool = False) -> sa.Column[int]:
    return sa.Column(column, sa.Integer, sa.ForeignKey(f"{table}.id", ondelete="CASCADE"),
                     primary_key=pk, nullable=False)


def upgrade() -> None:
    _members()
    _projects()
    _slices()
    op.create_table(
        "audit_log", _id(),
        sa.Column("at", UTCDateTime, nullable=False),
        sa.Column("actor", sa.String(64), nullable=False),
        sa.Column("operation", sa.String(64), nullable=False),
        sa.Column("target", sa.String(600), nullable=False),
        sa.Column("client_ip", sa.String(64), nullable=True),
        sa.Column("detail", sa.Text, nullable=False),
    )
    op.create_index("ix_audit_log_at", "audit_log", ["at"])


def _members() -> None:
    op.create_table(
        "members", _id(),
        sa.Column("name", sa.String(32), nullable=False, unique=True),
        sa.Column("email", sa.String(254), nullable=False),
        sa.Column("can_lead", sa.Boolean, nullable=False),
        sa.Column("roles", sa.JSON, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_table(
        "ssh_keys", _id(), _ref("members", "member_id"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("type", sa.String(40), nullable=False),
        sa.Column("fingerprint", sa.String(100), nullable=False),
        sa.Column("bits", sa.Integer, nullable=False),
        sa.Column("public_key", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.UniqueConstraint("member_id", "fingerprint", name="uq_ssh_keys_member_fingerprint"),
    )
    op.create_index("ix_ssh_keys_member_id", "ssh_keys", ["member_id"])
    op.create_table(
        "api_tokens", _id(), _ref("members", "member_id"),
        sa.Column("name", sa.String(100), nullable=False),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("expires", UTCDateTime, nullable=False),
        sa.Column("revoked", UTCDateTime, nullable=True),
    )
    op.create_index("ix_api_tokens_member_id", "api_tokens", ["member_id"])


def _projects() -> None:
    op.create_table(
        "projects", _id(),
        sa.Column("name", sa.String(32), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created", UTCDateTime, nullable=False),
    )
    op.create_table(
        "project_members", _ref("projects", "project_id", pk=True),
        _ref("members", "member_id", pk=True),
        sa.Column("role", sa.String(16), nullable=False),
    )
    for table in ("project_invitations", "join_requests"):
        op.create_table(table, _ref("projects", "project_id", pk=True),
                        _ref("members", "member_id", pk=True))


def _slices() -> None:
    op.create_table(
        "slices", _id(), _ref("projects", "project_id"),
        sa.Column("name", sa.String(19), nullable=False),
        sa.Column("urn", sa.String(512), nullable=False, unique=True),
        sa.Column("created", UTCDateTime, nullable=False),
        sa.Column("expires", UTCDateTime, nullable=False),
        _ref("members", "creator_id"),
        sa.UniqueConstraint("project_id", "name", name="uq_slices_project_name"),
    )
    op.create_table("slice_members", _ref("slices", "slice_id", pk=True),
                    _ref("members", "member_id", pk=True))


def downgrade() -> None:
    for table in ("audit_log", "slice_members", "slices", "join_requests",
                  "project_invitations", "project_members", "projects", "api_tokens",
                  "ssh_keys", "members"):
        op.drop_table(table)
