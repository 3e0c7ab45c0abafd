"""What every repository shares: a connection, paging and turning unique violations into 409."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Generic, TypeVar

from sqlalchemy import Connection, Select, func, select
from sqlalchemy.exc import IntegrityError

from slicelab.domain.errors import Conflict

__all__ = ["Page", "Repository"]

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class Page(Generic[T]):
    """One page of a list: its items and how many there are in all."""

    items: list[T]
    total: int
    limit: int
    offset: int


class Repository:
    def __init__(self, connection: Connection) -> None:
        self.connection = connection

    @contextmanager
    def unique(self, what: str, *, field: str = "name") -> Iterator[None]:
        """Run an insert in a savepoint; a uniqueness violation becomes :class:`Conflict`."""
        try:
            with self.connection.begin_nested():
                yield
        except IntegrityError:
            raise Conflict(f"{what} exists already", field=field) from None

    @contextmanager
    def unique_batch(self, what: str, *, field: str = "name") -> Iterator[None]:
        """:meth:`unique` without its savepoint, for inserts whose caller rolls back to a
        savepoint of its own on failure (a PostgreSQL transaction is unusable after the
        error until then)."""
        try:
            yield
        except IntegrityError:
            raise Conflict(f"{what} exists already", field=field) from None

    def count(self, query: Select[tuple[object, ...]]) -> int:
        subquery = query.order_by(None).subquery()
        return int(self.connection.execute(select(func.count()).select_from(subquery))
                   .scalar_one())
