"""Quotas and site limits in the change log: an allocation engine keeps what it read of them
across batches and reads them again only after a change.

Revision ID: 0007
Revises: 0006
Create Date: 2025-01-07

A project's quota row written (inserted, updated or deleted) logs kind ``p`` with
``quota:<project id>``; a site's limits row logs kind ``n`` with ``site:<site id>`` (the
site's one-sliver-per-slice-per-node policy is part of the placement snapshot, which a kind
``n`` change reloads). Both take the booking lock first, as every other log writer does.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_LOCK = "PERFORM 1 FROM booking_epoch WHERE id = 1 FOR UPDATE;"

_LOGGED = {  # trigger name: (table, key column, tag, kind)
    "slicelab_quota_changed": ("project_quotas", "project_id", "quota:", "p"),
    "slicelab_site_limits_changed": ("site_limits", "site_id", "site:", "n"),
}


def upgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, (table, key, tag, kind) in _LOGGED.items():
        if postgres:
            op.execute(sa.text(
                f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN {_LOCK} "
                "INSERT INTO booking_changes (node_id, kind) VALUES "
                f"('{tag}' || (CASE WHEN TG_OP = 'DELETE' THEN OLD.{key} ELSE NEW.{key} END), "
                f"'{kind}'); RETURN NULL; END $$"))
            op.execute(sa.text(f"CREATE TRIGGER {name} AFTER INSERT OR UPDATE OR DELETE ON "
                               f"{table} FOR EACH ROW EXECUTE FUNCTION {name}()"))
            continue
        for event, row in (("INSERT", "NEW"), ("UPDATE", "NEW"), ("DELETE", "OLD")):
            op.execute(sa.text(
                f"CREATE TRIGGER {name}_{event.lower()} AFTER {event} ON {table} FOR EACH ROW "
                f"BEGIN INSERT INTO booking_changes (node_id, kind) VALUES "
                f"('{tag}' || {row}.{key}, '{kind}'); END"))


def downgrade() -> None:
    postgres = op.get_bind().dialect.name == "postgresql"
    for name, (table, *_) in _LOGGED.items():
        if postgres:
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS {name} ON {table}"))
            op.execute(sa.text(f"DROP FUNCTION IF EXISTS {name}()"))
            continue
        for event in ("insert", "update", "delete"):
            op.execute(sa.text(f"DROP TRIGGER IF EXISTS {name}_{event}"))
