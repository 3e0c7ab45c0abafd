"""Booking change log: every change to the bookings or to a node's placement-relevant fields
leaves a row, written under one lock, so that allocation engines in several processes keep
their in-memory snapshots current.

Revision ID: 0005
Revises: 0004
Create Date: 2025-01-05

``booking_epoch`` has one row; every writer of bookings locks it (PostgreSQL ``FOR UPDATE``)
before its first change and holds it until commit, so change ids are given out in commit
order. Triggers write ``booking_changes`` (kind ``b``: the bookings of a node changed; ``n``:
the node itself was added, removed or changed its boot state, inventory or site; ``l``: a
link was added or removed, its id in ``node_id``) and take the lock themselves, so that no
writer, not even a cascading delete, can skip the log.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

ID = 40

_PG_LOCK = "PERFORM 1 FROM booking_epoch WHERE id = 1 FOR UPDATE;"

_PG_FUNCTIONS = {
    "slicelab_bookings_inserted": "INSERT INTO booking_changes (node_id, kind) "
                                  "SELECT DISTINCT node_id, 'b' FROM new_rows;",
    "slicelab_bookings_deleted": "INSERT INTO booking_changes (node_id, kind) "
                                 "SELECT DISTINCT node_id, 'b' FROM old_rows;",
    "slicelab_bookings_updated": "INSERT INTO booking_changes (node_id, kind) "
                                 "SELECT node_id, 'b' FROM new_rows UNION "
                                 "SELECT node_id, 'b' FROM old_rows;",
}

_PG_TRIGGERS = {
    "slicelab_bookings_inserted": "AFTER INSERT ON bookings REFERENCING NEW TABLE AS new_rows",
    "slicelab_bookings_deleted": "AFTER DELETE ON bookings REFERENCING OLD TABLE AS old_rows",
    "slicelab_bookings_updated": "AFTER UPDATE ON bookings REFERENCING OLD TABLE AS old_rows "
                                 "NEW TABLE AS new_rows",
}

_PG_NODE_FUNCTION = (
    "CREATE FUNCTION slicelab_node_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    "IF TG_OP = 'UPDATE' AND OLD.boot_state = NEW.boot_state AND OLD.site_id = NEW.site_id "
    "AND OLD.inventory::text = NEW.inventory::text THEN RETURN NEW; END IF; "
    + _PG_LOCK +
    " IF TG_OP = 'DELETE' THEN INSERT INTO booking_changes (node_id, kind) "
    "VALUES (OLD.id, 'n'); RETURN OLD; END IF; "
    "INSERT INTO booking_changes (node_id, kind) VALUES (NEW.id, 'n'); RETURN NEW; END $$")

_PG_NODE_TRIGGER = ("CREATE TRIGGER slicelab_node_changed AFTER INSERT OR DELETE OR UPDATE OF "
                    "boot_state, inventory, site_id ON nodes FOR EACH ROW "
                    "EXECUTE FUNCTION slicelab_node_changed()")

_PG_LINK_FUNCTION = (
    "CREATE FUNCTION slicelab_link_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    + _PG_LOCK +
    " IF TG_OP = 'DELETE' THEN INSERT INTO booking_changes (node_id, kind) "
    "VALUES (OLD.id, 'l'); RETURN OLD; END IF; "
    "INSERT INTO booking_changes (node_id, kind) VALUES (NEW.id, 'l'); RETURN NEW; END $$")

_PG_LINK_TRIGGER = ("CREATE TRIGGER slicelab_link_changed AFTER INSERT OR DELETE ON slice_links "
                    "FOR EACH ROW EXECUTE FUNCTION slicelab_link_changed()")

_SQLITE_LOG = "INSERT INTO booking_changes (node_id, kind) VALUES ({}, '{}');"

_SQLITE_TRIGGERS = {
    "slicelab_bookings_inserted": ("AFTER INSERT ON bookings FOR EACH ROW", "NEW.node_id",
                                   "b"),
    "slicelab_bookings_deleted": ("AFTER DELETE ON bookings FOR EACH ROW", "OLD.node_id", "b"),
    "slicelab_bookings_updated": ("AFTER UPDATE ON bookings FOR EACH ROW", "NEW.node_id", "b"),
    "slicelab_node_added": ("AFTER INSERT ON nodes FOR EACH ROW", "NEW.id", "n"),
    "slicelab_node_removed": ("AFTER DELETE ON nodes FOR EACH ROW", "OLD.id", "n"),
    "slicelab_link_added": ("AFTER INSERT ON slice_links FOR EACH ROW", "NEW.id", "l"),
    "slicelab_link_removed": ("AFTER DELETE ON slice_links FOR EACH ROW", "OLD.id", "l"),
    "slicelab_node_changed": (
        "AFTER UPDATE OF boot_state, inventory, site_id ON nodes FOR EACH ROW WHEN "
        "OLD.boot_state IS NOT NEW.boot_state OR OLD.site_id IS NOT NEW.site_id "
        "OR OLD.inventory IS NOT NEW.inventory", "NEW.id", "n"),
}


def upgrade() -> None:
    op.create_table(
        "booking_epoch",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
        sa.Column("pruned", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "booking_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer, "sqlite"), primary_key=True,
                  autoincrement=True),
        sa.Column("node_id", sa.String(ID), nullable=False),
        sa.Column("kind", sa.String(1), nullable=False),
    )
    op.execute(sa.text("INSERT INTO booking_epoch (id, pruned) VALUES (1, 0)"))
    if op.get_bind().dialect.name == "postgresql":
        _postgres_triggers()
    else:
        for name, (when, node, kind) in _SQLITE_TRIGGERS.items():
            op.execute(sa.text(f"CREATE TRIGGER {name} {when} BEGIN "
                               f"{_SQLITE_LOG.format(node, kind)} END"))


def _postgres_triggers() -> None:
    for name, body in _PG_FUNCTIONS.items():
        op.execute(sa.text(f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ "
                           f"BEGIN {_PG_LOCK} {body} RETURN NULL; END $$"))
        op.execute(sa.text(f"CREATE TRIGGER {name} {_PG_TRIGGERS[name]} FOR EACH STATEMENT "
                           f"EXECUTE FUNCTION {name}()"))
    op.execute(sa.text(_PG_NODE_FUNCTION))
    op.execute(sa.text(_PG_NODE_TRIGGER))
    op.execute(sa.text(_PG_LINK_FUNCTION))
    op.execute(sa.text(_PG_LINK_TRIGGER))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        tables = {"slicelab_node_changed": "nodes", "slicelab_link_changed": "slice_links"}
        for name in (*_PG_FUNCTIONS, *tables):
            table = tables.get(name, "bookings")
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
            op.execute(sa.text(f"DROP FUNCTION IF EXISTS {name}()"))
    else:
        for name in _SQLITE_TRIGGERS:
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}"))
    op.drop_table("booking_changes")
    op.drop_table("booking_epoch")
