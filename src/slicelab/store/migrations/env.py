"""Alembic environment: run by :func:`slicelab.store.migrate.upgrade` with a live connection.

The connection is passed in ``config.attributes["connection"]``; slicelab never lets Alembic
open its own, so the same code serves SQLite, PostgreSQL and per-test schemas.
"""

from __future__ import annotations

from alembic import context

from slicelab.store.tables import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
