"""The clearinghouse tables (SQLAlchemy Core), kept outside the domain.

This metadata describes the schema the migrations build; a test checks that they agree.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Boolean,
    Column,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from .types import UTCDateTime

__all__ = [
    "api_tokens",
    "audit_log",
    "join_requests",
    "members",
    "metadata",
    "project_invitations",
    "project_members",
    "projects",
    "slice_members",
    "slices",
    "ssh_keys",
]

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}
metadata = MetaData(naming_convention=NAMING)


def _fk(table: str, name: str = "id") -> ForeignKey:
    return ForeignKey(f"{table}.{name}", ondelete="CASCADE")


members = Table(
    "members", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("email", String(254), nullable=False),
    Column("can_lead", Boolean, nullable=False, default=False),
    Column("roles", JSON, nullable=False),
    Column("created", UTCDateTime, nullable=False),
)

ssh_keys = Table(
    "ssh_keys", metadata,
    Column("id", Integer, primary_key=True),
    Column("member_id", Integer, _fk("members"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("type", String(40), nullable=False),
    Column("fingerprint", String(100), nullable=False),
    Column("bits", Integer, nullable=False),
    Column("public_key", Text, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    UniqueConstraint("member_id", "fingerprint", name="uq_ssh_keys_member_fingerprint"),
)

api_tokens = Table(
    "api_tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("member_id", Integer, _fk("members"), nullable=False, index=True),
    Column("name", String(100), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("revoked", UTCDateTime, nullable=True),
)

projects = Table(
    "projects", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("description", Text, nullable=False),
    Column("created", UTCDateTime, nullable=False),
)

project_members = Table(
    "project_members", metadata,
    Column("project_id", Integer, _fk("projects"), primary_key=True),
    Column("member_id", Integer, _fk("members"), primary_key=True),
    Column("role", String(16), nullable=False),
)

project_invitations = Table(
    "project_invitations", metadata,
    Column("project_id", Integer, _fk("projects"), primary_key=True),
    Column("member_id", Integer, _fk("members"), primary_key=True),
)

join_requests = Table(
    "join_requests", metadata,
    Column("project_id", Integer, _fk("projects"), primary_key=True),
    Column("member_id", Integer, _fk("members"), primary_key=True),
)

slices = Table(
    "slices", metadata,
    Column("id", Integer, primary_key=True),
    Column("project_id", Integer, _fk("projects"), nullable=False),
    Column("name", String(19), nullable=False),
    Column("urn", String(512), nullable=False, unique=True),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("creator_id", Integer, _fk("members"), nullable=False),
    UniqueConstraint("project_id", "name", name="uq_slices_project_name"),
)

slice_members = Table(
    "slice_members", metadata,
    Column("slice_id", Integer, _fk("slices"), primary_key=True),
    Column("member_id", Integer, _fk("members"), primary_key=True),
)

audit_log = Table(
    "audit_log", metadata,
    Column("id", Integer, primary_key=True),
    Column("at", UTCDateTime, nullable=False, index=True),
    Column("actor", String(64), nullable=False),
    Column("operation", String(64), nullable=False),
    Column("target", String(600), nullable=False),
    Column("client_ip", String(64), nullable=True),
    Column("detail", Text, nullable=False),
)
