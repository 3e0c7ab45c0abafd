"""Shared fixtures: a migrated, empty database on SQLite and on PostgreSQL.

* ``database`` — ``(url, schema)``, parametrized over ``sqlite`` (a file in ``tmp_path``)
  and ``postgresql`` (``$SLICELAB_TEST_POSTGRES``, default :data:`POSTGRES_URL`, in a
  fresh schema per test, dropped afterwards). When PostgreSQL is
  unreachable its tests are skipped, except with ``CI=true``, where they fail.
* ``engine`` — a SQLAlchemy engine on that database, migrated to the newest revision.
* ``uow_factory`` — makes :class:`slicelab.store.uow.UnitOfWork` objects on ``engine``.

Any test that asks for one of these runs once per database.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.exc import OperationalError

from slicelab.store.engine import make_engine
from slicelab.store.migrate import upgrade
from slicelab.store.uow import UnitOfWorkFactory, unit_of_work_factory

# The steering material (GENI schemas and real RSpecs) sits beside the checkout as shared/;
# tests find it through SLICELAB_SHARED, set here once for every test module.
_BESIDE = Path(__file__).resolve().parents[2] / "shared"
os.environ.setdefault("SLICELAB_SHARED", str(_BESIDE if _BESIDE.is_dir() else "/work/shared"))

POSTGRES_URL = os.environ.get(
    "SLICELAB_TEST_POSTGRES", "postgresql+psycopg://postgres@127.0.0.1:5432/slicelab_test")
_pg_state: dict[str, str | None] = {}


def _postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used (``None`` if it can); asked once per session."""
    if "problem" not in _pg_state:
        probe = create_engine(POSTGRES_URL, connect_args={"connect_timeout": 3})
        try:
            with probe.connect() as conn:
                conn.execute(text("SELECT 1"))
            _pg_state["problem"] = None
        except OperationalError as exc:
            _pg_state["problem"] = str(exc).splitlines()[0]
        finally:
            probe.dispose()
    return _pg_state["problem"]


def _require_postgres() -> None:
    problem = _postgres_problem()
    if problem is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"PostgreSQL unreachable under CI=true: {problem}")
    pytest.skip(f"PostgreSQL unreachable: {problem}")


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
             ) -> Iterator[tuple[str, str | None]]:
    """``(url, schema)`` of an empty database for this test."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('db') / 'slicelab.db'}", None
        return
    _require_postgres()
    schema = f"t_{uuid.uuid4().hex[:16]}"
    admin = create_engine(POSTGRES_URL)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    try:
        yield POSTGRES_URL, schema
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture
def engine(database: tuple[str, str | None]) -> Iterator[Engine]:
    url, schema = database
    eng = make_engine(url, schema=schema)
    upgrade(eng)
    try:
        yield eng
    finally:
        eng.dispose()


@pytest.fixture
def uow_factory(engine: Engine) -> UnitOfWorkFactory:
    return unit_of_work_factory(engine)
