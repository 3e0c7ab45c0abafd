"""Bulk writes of the allocation engine's batch, cheaper than SQLAlchemy's ``executemany``.

PostgreSQL: the rows of a table go as one JSON parameter (an array of one object per row,
dumped by :mod:`.jsontext`) and one ``INSERT ... SELECT FROM json_to_recordset(...)`` unpacks
it server-side: one statement and one round trip whatever the number of rows, no per-row,
per-column bind processing in SQLAlchemy or psycopg, and each row parsed once.
:func:`pipelined` sends several statements in one round trip.

SQLite: the driver's ``executemany`` with the values already in the stored form (its C loop
binds them; unpacking JSON in SQL costs SQLite more than that).

The statements are derived from the SQLAlchemy ``Table`` (the schema of record) and sent as
driver SQL. Values must already be in the stored form: times through :class:`Times` (UTC;
naive times are refused, as :class:`~.types.UTCDateTime` does), JSON columns as Python lists
and dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Connection, Float, Integer, Table

from . import jsontext
from .types import UTCDateTime

__all__ = ["Times", "insert_rows", "insert_sql", "pg_rows_json", "pipelined",
           "rows_json"]

_PG_CASTS: tuple[tuple[type[Any], str], ...] = (
    (BigInteger, "bigint"), (Integer, "integer"), (Boolean, "boolean"),
    (Float, "double precision"), (UTCDateTime, "timestamptz"))


class Times:
    """Datetimes in the form the database stores (memoized: a batch's rows share a few)."""

    def __init__(self, dialect: str) -> None:
        self._sqlite = dialect == "sqlite"
        self._seen: dict[datetime, str] = {}

    def __call__(self, moment: datetime) -> str:
        text = self._seen.get(moment)
        if text is None:
            text = self._seen[moment] = self._form(moment)
        return text

    def _form(self, moment: datetime) -> str:
        if moment.tzinfo is None:
            raise ValueError("naive datetime given to the database; use UTC-aware times")
        moment = moment.astimezone(UTC)
        if self._sqlite:  # what SQLAlchemy's SQLite DATETIME writes (text order is time order)
            return moment.replace(tzinfo=None).isoformat(sep=" ", timespec="microseconds")
        return moment.isoformat()


def _pg_type(column: Any) -> str:
    if isinstance(column.type, JSON):
        return "json"
    for kind, cast in _PG_CASTS:
        if isinstance(column.type, kind):
            return cast
    return "text"


@cache
def insert_sql(table: Table, columns: tuple[str, ...], dialect: str) -> str:
    """PostgreSQL: ``INSERT INTO table (columns) SELECT ... FROM <the JSON parameter>``, an
    array of one object per row (:func:`pg_rows_json`; each parsed once, as a record);
    SQLite: the ``INSERT ... VALUES (?, ...)`` that :func:`insert_rows` runs per row."""
    names = ", ".join(f'"{c}"' for c in columns)
    if dialect == "postgresql":
        types = ", ".join(f'"{c}" {_pg_type(table.c[c])}' for c in columns)
        return (f'INSERT INTO "{table.name}" ({names}) SELECT {names} '
                f"FROM json_to_recordset(CAST(%s AS json)) AS r({types})")
    return f'INSERT INTO "{table.name}" ({names}) VALUES ({", ".join("?" * len(columns))})'


@cache
def _json_positions(table: Table, columns: tuple[str, ...]) -> tuple[int, ...]:
    return tuple(k for k, c in enumerate(columns) if isinstance(table.c[c].type, JSON))


def rows_json(rows: Iterable[Sequence[Any]]) -> str:
    """Rows as one JSON array of arrays (for statements that take them by position)."""
    return jsontext.dumps(rows if isinstance(rows, list) else list(rows))


def pg_rows_json(columns: tuple[str, ...], rows: Iterable[Sequence[Any]]) -> str:
    """The parameter of an :func:`insert_sql` statement on PostgreSQL."""
    return jsontext.dumps([dict(zip(columns, row, strict=True)) for row in rows])


def insert_rows(connection: Connection, table: Table, columns: tuple[str, ...],
                rows: Sequence[list[Any]]) -> None:
    """Insert ``rows`` (values in ``columns`` order, in the stored form; JSON columns as
    Python values): on PostgreSQL one statement with the rows as one JSON parameter; on
    SQLite the driver's ``executemany`` (its C loop binds the values; unpacking JSON in
    SQL costs SQLite more than that)."""
    if not rows:
        return
    dialect = connection.dialect.name
    sql = insert_sql(table, columns, dialect)
    if dialect == "postgresql":
        connection.exec_driver_sql(sql, (pg_rows_json(columns, rows),))
        return
    dumps, positions = jsontext.dumps, _json_positions(table, columns)
    for row in rows:
        for k in positions:
            row[k] = dumps(row[k])
    connection.exec_driver_sql(sql, [tuple(r) for r in rows])


def pipelined(connection: Connection, statements: Sequence[tuple[str, Any]], *,
              row_factory: Any = None) -> list[list[Any]]:
    """PostgreSQL: run ``statements`` (driver SQL; parameters a sequence, or a mapping for
    ``%(name)s``) in order, in this connection's transaction, as one pipeline (one round trip
    to the server; each statement still has a snapshot of its own, so one may read what an
    earlier one's lock waited for); the rows of each (empty for those that return none), as
    tuples or as ``row_factory`` (a psycopg row factory) makes them. Errors are the
    driver's (psycopg), not SQLAlchemy's."""
    raw: Any = connection.connection.driver_connection
    cursors = []
    with raw.pipeline():
        for sql, params in statements:
            cursor = raw.cursor() if row_factory is None else raw.cursor(row_factory=row_factory)
            cursor.execute(sql, params)
            cursors.append(cursor)
    return [cursor.fetchall() if cursor.description is not None else [] for cursor in cursors]
