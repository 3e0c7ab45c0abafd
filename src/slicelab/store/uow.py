"""The unit of work: one transaction, with the repositories bound to it.

Use it as a context manager. Nothing is kept unless :meth:`UnitOfWork.commit` is called;
leaving the block (normally or by an exception) rolls back whatever was not committed.
"""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType

from sqlalchemy import Connection, Engine, RootTransaction

from .aggregate import AggregateStore
from .audit import AuditRepository
from .inventory import HeartbeatRepository, InventoryRepository
from .leases import LeaseStore
from .members import KeyRepository, MemberRepository, TokenRepository
from .projects import ProjectRepository
from .slices import SliceRepository

__all__ = ["UnitOfWork", "UnitOfWorkFactory", "unit_of_work_factory"]


class UnitOfWork:
    members: MemberRepository
    keys: KeyRepository
    tokens: TokenRepository
    projects: ProjectRepository
    slices: SliceRepository
    audit: AuditRepository
    aggregate: AggregateStore
    inventory: InventoryRepository
    heartbeats: HeartbeatRepository
    leases: LeaseStore

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None

    def __enter__(self) -> UnitOfWork:
        self._connection = self._engine.connect()
        self._transaction = self._connection.begin()
        conn = self._connection
        self.members, self.keys = MemberRepository(conn), KeyRepository(conn)
        self.tokens, self.projects = TokenRepository(conn), ProjectRepository(conn)
        self.slices, self.audit = SliceRepository(conn), AuditRepository(conn)
        self.aggregate = AggregateStore(conn)
        self.inventory, self.heartbeats = InventoryRepository(conn), HeartbeatRepository(conn)
        self.leases = LeaseStore(conn)
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        assert self._connection is not None and self._transaction is not None
        try:
            if self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self._connection.close()

    def commit(self) -> None:
        """Keep everything done so far; later work starts a new transaction."""
        assert self._connection is not None and self._transaction is not None
        self._transaction.commit()
        self._transaction = self._connection.begin()

    def rollback(self) -> None:
        assert self._connection is not None and self._transaction is not None
        self._transaction.rollback()
        self._transaction = self._connection.begin()


UnitOfWorkFactory = Callable[[], UnitOfWork]


def unit_of_work_factory(engine: Engine) -> UnitOfWorkFactory:
    return lambda: UnitOfWork(engine)
