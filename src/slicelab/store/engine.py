"""Database engines: SQLite (WAL, foreign keys, busy timeout) or PostgreSQL (psycopg 3)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

__all__ = ["BUSY_TIMEOUT_MS", "READ_ONLY", "make_engine"]

BUSY_TIMEOUT_MS = 10_000
READ_ONLY = "slicelab_read_only"  # execution option: begin without the SQLite write lock
# Connections kept per engine: one per request thread (the web server's thread pool holds
# 40), and the allocation engine's thread must not wait behind them for one. SQLite's are
# cheap; PostgreSQL's are server processes, so fewer are kept and more made on demand.
SQLITE_POOL = 64
PG_POOL = 20


def make_engine(url: str, *, schema: str | None = None) -> Engine:
    """An engine for ``url``; on PostgreSQL ``schema`` puts every table in that schema."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite(url, parsed.database)
    connect_args = {"options": f"-csearch_path={schema}"} if schema else {}
    return create_engine(url, pool_pre_ping=True, connect_args=connect_args,
                         pool_size=PG_POOL, max_overflow=PG_POOL)


def _sqlite(url: str, database: str | None) -> Engine:
    if database and database != ":memory:":
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000,
                                              "check_same_thread": False},
                           pool_size=SQLITE_POOL, max_overflow=SQLITE_POOL)
    event.listen(engine, "connect", _sqlite_pragmas)
    event.listen(engine, "begin", _sqlite_begin)
    return engine


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # Let SQLAlchemy, not the sqlite3 module, issue BEGIN, so that SAVEPOINTs work.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    for pragma in ("journal_mode=WAL", "foreign_keys=ON", f"busy_timeout={BUSY_TIMEOUT_MS}",
                   "synchronous=NORMAL"):
        cursor.execute(f"PRAGMA {pragma}")
    cursor.close()


def _sqlite_begin(connection: Any) -> None:
    """Write transactions take the write lock at once (no deadlock between two readers that
    both want to write); read-only ones (:data:`READ_ONLY`) take none."""
    read_only = connection.get_execution_options().get(READ_ONLY, False)
    connection.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")
