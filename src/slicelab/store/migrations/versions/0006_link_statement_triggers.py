"""Links' change log on PostgreSQL: one statement trigger per insert or delete, not one per row.

Revision ID: 0006
Revises: 0005
Create Date: 2025-01-06

The row trigger of ``0005`` ran a PL/pgSQL call, the booking lock and one log insert for
every link; the allocation engine inserts a batch's links with one statement. The statement
triggers (transition tables, as for ``bookings``) write the same rows (kind ``l``, the link's
id), take the lock once, and do nothing when the statement touched no link. SQLite keeps its
row triggers (no PL/pgSQL call, no lock to take).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_LOCK = "PERFORM 1 FROM booking_epoch WHERE id = 1 FOR UPDATE;"

_TRIGGERS = {  # name: (event, transition table)
    "slicelab_links_added": ("INSERT", "NEW TABLE AS changed"),
    "slicelab_links_removed": ("DELETE", "OLD TABLE AS changed"),
}

_ROW_FUNCTION = (
    "CREATE FUNCTION slicelab_link_changed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
    + _LOCK +
    " IF TG_OP = 'DELETE' THEN INSERT INTO booking_changes (node_id, kind) "
    "VALUES (OLD.id, 'l'); RETURN OLD; END IF; "
    "INSERT INTO booking_changes (node_id, kind) VALUES (NEW.id, 'l'); RETURN NEW; END $$")

_ROW_TRIGGER = ("CREATE TRIGGER slicelab_link_changed AFTER INSERT OR DELETE ON slice_links "
                "FOR EACH ROW EXECUTE FUNCTION slicelab_link_changed()")


def _postgres() -> bool:
    return bool(op.get_bind().dialect.name == "postgresql")


def upgrade() -> None:
    if not _postgres():
        return
    op.execute(sa.text("DROP TRIGGER IF EXISTS slicelab_link_changed ON slice_links"))
    op.execute(sa.text("DROP FUNCTION IF EXISTS slicelab_link_changed()"))
    for name, (event, table) in _TRIGGERS.items():
        op.execute(sa.text(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF NOT EXISTS (SELECT 1 FROM changed) THEN RETURN NULL; END IF; {_LOCK} "
            "INSERT INTO booking_changes (node_id, kind) "
            "SELECT id, 'l' FROM changed ORDER BY id; RETURN NULL; END $$"))
        op.execute(sa.text(f"CREATE TRIGGER {name} AFTER {event} ON slice_links "
                           f"REFERENCING {table} FOR EACH STATEMENT EXECUTE FUNCTION {name}()"))


def downgrade() -> None:
    if not _postgres():
        return
    for name in _TRIGGERS:
        op.execute(sa.text(f"DROP TRIGGER IF EXISTS {name} ON slice_links"))
        op.execute(sa.text(f"DROP FUNCTION IF EXISTS {name}()"))
    op.execute(sa.text(_ROW_FUNCTION))
    op.execute(sa.text(_ROW_TRIGGER))
