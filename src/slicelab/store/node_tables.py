"""The aggregate's tables (SQLAlchemy Core): sites, nodes, enrollment tokens, slivers, links,
per-node desired state and pending commands. They share the clearinghouse's metadata; the
migration ``0002_aggregate`` builds them.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    Float,
    ForeignKey,
    Integer,
    String,
    Table,
    Text,
    UniqueConstraint,
)

from .tables import metadata
from .types import UTCDateTime

__all__ = [
    "enrollment_tokens",
    "node_commands",
    "node_desired",
    "nodes",
    "sites",
    "slice_links",
    "slivers",
]

ID = 40  # "n-", "s-", "l-", "c-" followed by hex


def _fk(table: str, name: str = "id") -> ForeignKey:
    return ForeignKey(f"{table}.{name}", ondelete="CASCADE")


sites = Table(
    "sites", metadata,
    Column("id", Integer, primary_key=True),
    Column("name", String(32), nullable=False, unique=True),
    Column("urn", String(512), nullable=False),
    Column("created", UTCDateTime, nullable=False),
)

nodes = Table(
    "nodes", metadata,
    Column("id", String(ID), primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("site_id", Integer, _fk("sites"), nullable=False, index=True),
    Column("urn", String(512), nullable=False),
    Column("boot_state", String(16), nullable=False),
    Column("inventory", JSON, nullable=False),
    Column("host_ip", String(64), nullable=True),
    Column("last_seen", UTCDateTime, nullable=True),
    Column("auth_failures", Integer, nullable=False),
    Column("sealed_key", Text, nullable=False),
    Column("created", UTCDateTime, nullable=False),
)

enrollment_tokens = Table(
    "enrollment_tokens", metadata,
    Column("id", Integer, primary_key=True),
    Column("site_id", Integer, _fk("sites"), nullable=False, index=True),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("node_name", String(63), nullable=True),
    Column("created", UTCDateTime, nullable=False),
    Column("expires", UTCDateTime, nullable=False),
    Column("used", UTCDateTime, nullable=True),
)

node_desired = Table(
    "node_desired", metadata,
    Column("node_id", String(ID), _fk("nodes"), primary_key=True),
    Column("generation", Integer, nullable=False),
    Column("digest", String(64), nullable=False),
    Column("document", JSON, nullable=False),
    Column("applied", Integer, nullable=False),
)

slivers = Table(
    "slivers", metadata,
    Column("id", String(ID), primary_key=True),
    Column("slice_id", Integer, _fk("slices"), nullable=False, index=True),
    Column("node_id", String(ID), _fk("nodes"), nullable=False, index=True),
    Column("client_id", String(63), nullable=False),
    Column("request", JSON, nullable=False),
    Column("plan", JSON, nullable=False),
    Column("allocation_state", String(32), nullable=False),
    Column("operational_state", String(32), nullable=False),
    Column("reported_state", String(16), nullable=True),
    Column("error", Text, nullable=True),
    Column("control_ip", String(64), nullable=True),
    Column("ssh_host", String(255), nullable=True),
    Column("ssh_port", Integer, nullable=True),
    Column("created", UTCDateTime, nullable=False),
    UniqueConstraint("slice_id", "client_id", name="uq_slivers_slice_client"),
)

slice_links = Table(
    "slice_links", metadata,
    Column("id", String(ID), primary_key=True),
    Column("slice_id", Integer, _fk("slices"), nullable=False, index=True),
    Column("client_id", String(63), nullable=False),
    Column("vni", Integer, nullable=False, unique=True),
    Column("subnet", String(43), nullable=False),
    Column("capacity_mbps", Integer, nullable=True),
    Column("request", JSON, nullable=False),
    Column("sliver_ids", JSON, nullable=False),
    Column("state", String(16), nullable=True),
    Column("error", Text, nullable=True),
    UniqueConstraint("slice_id", "client_id", name="uq_slice_links_slice_client"),
)

node_commands = Table(
    "node_commands", metadata,
    Column("id", String(ID), primary_key=True),
    Column("node_id", String(ID), _fk("nodes"), nullable=False, index=True),
    Column("sliver_id", String(ID), nullable=False),
    Column("argv", JSON, nullable=False),
    Column("timeout", Float, nullable=False),
    Column("created", UTCDateTime, nullable=False),
    Column("finished", UTCDateTime, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("stdout", Text, nullable=True),
    Column("stderr", Text, nullable=True),
)
