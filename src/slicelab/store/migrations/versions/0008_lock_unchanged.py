"""A PostgreSQL function that takes the booking lock and fails unless the change log holds
nothing after a given change: the allocation engine's writer sends it, the batch's writes and
the commit in one round trip (a check that fails aborts the rest of that round trip).

Revision ID: 0008
Revises: 0007
Create Date: 2025-01-08

``slicelab_lock_unchanged(after)`` locks ``booking_epoch`` (``FOR UPDATE``, as every writer
of bookings does first) and returns the highest change pruned; when changes were pruned or
logged after ``after`` it raises SQLSTATE ``SL409`` instead. SQLite needs nothing: its write
transactions are exclusive and the engine checks in Python.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_FUNCTION = """
CREATE FUNCTION slicelab_lock_unchanged(after bigint) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    upto bigint;
BEGIN
    SELECT pruned INTO upto FROM booking_epoch WHERE id = 1 FOR UPDATE;
    -- max(id): one step down the primary key, whatever the plan (with ``id > after`` a
    -- generic plan may scan the whole log)
    IF upto > after OR coalesce((SELECT max(id) FROM booking_changes), 0) > after THEN
        RAISE EXCEPTION 'bookings changed after change %', after USING ERRCODE = 'SL409';
    END IF;
    RETURN upto;
END $$
"""


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text(_FUNCTION))


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(sa.text("DROP FUNCTION IF EXISTS slicelab_lock_unchanged(bigint)"))
