"""The migrations build exactly the tables the metadata describes, and run again harmlessly."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect

from slicelab.store.migrate import current_revision, downgrade, head_revision, upgrade
from slicelab.store.tables import metadata


def test_migrated_schema_matches_the_metadata(engine: Engine) -> None:
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []
    assert current_revision(engine) == head_revision()


def test_upgrade_is_idempotent_and_downgrade_empties(engine: Engine) -> None:
    upgrade(engine)
    downgrade(engine, "base")
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    upgrade(engine)
    assert set(metadata.tables) <= set(inspect(engine).get_table_names())
