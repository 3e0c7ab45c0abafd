"""The unit of work: one transaction, with the repositories bound to it.

Use it as a context manager. Nothing is kept unless :meth:`UnitOfWork.commit` is called;
leaving the block (normally or by an exception) rolls back whatever was not committed.

A *read-only* unit of work (:func:`read_only`) is for paths that only read. It begins only
when one of its repositories is first used (a request that hands all its work to another
thread, as allocation does, never takes a connection). On SQLite it
begins with a plain ``BEGIN``, which takes no write lock (a write transaction begins with
``BEGIN IMMEDIATE``, see :mod:`.engine`), so readers never wait for writers nor block them;
its :meth:`~UnitOfWork.commit` refuses.

On SQLite, write units of work of one process also queue, first come first served, on a lock
per engine before they begin (:class:`~.queue.FairLock`): SQLite's own busy handler polls, and
under many threads a writer can starve past the busy timeout ("database is locked") although
the database is only busy, never stuck.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any
from weakref import WeakKeyDictionary

from sqlalchemy import Connection, Engine, NestedTransaction, RootTransaction

from slicelab.domain.errors import SlicelabError, Unavailable

from .aggregate import AggregateStore
from .audit import AuditRepository
from .engine import BUSY_TIMEOUT_MS, READ_ONLY
from .inventory import HeartbeatRepository, InventoryRepository
from .leases import LeaseStore
from .members import KeyRepository, MemberRepository, TokenRepository
from .projects import ProjectRepository
from .queue import FairLock
from .slices import SliceRepository

__all__ = ["UnitOfWork", "UnitOfWorkFactory", "read_only", "unit_of_work_factory"]


WRITER_QUEUE_TIMEOUT = 6 * BUSY_TIMEOUT_MS / 1000  # seconds in line before giving up
_WRITERS: WeakKeyDictionary[Engine, FairLock] = WeakKeyDictionary()
_WRITERS_GUARD = threading.Lock()


def _writer_lock(engine: Engine) -> FairLock | None:
    """The queue of this process's SQLite writers on ``engine`` (None on PostgreSQL)."""
    if engine.dialect.name != "sqlite":
        return None
    with _WRITERS_GUARD:
        lock = _WRITERS.get(engine)
        if lock is None:
            lock = _WRITERS[engine] = FairLock()
        return lock


_REPOSITORIES = ("members", "keys", "tokens", "projects", "slices", "audit", "aggregate",
                 "inventory", "heartbeats", "leases")


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

    def __init__(self, engine: Engine, *, read_only: bool = False) -> None:
        self._engine, self.read_only = engine, read_only
        self._connection: Connection | None = None
        self._transaction: RootTransaction | None = None
        self._queue = None if read_only else _writer_lock(engine)

    def __enter__(self) -> UnitOfWork:
        if self.read_only:
            return self  # begins when a repository is first used (see __getattr__)
        return self._start()

    def _start(self) -> UnitOfWork:
        if self._queue is not None and not self._queue.acquire(timeout=WRITER_QUEUE_TIMEOUT):
            raise Unavailable("the database stayed busy with other writers; try again")
        try:
            return self._begin()
        except BaseException:
            self._release()
            raise

    def _release(self) -> None:
        if self._queue is not None:
            self._queue.release()

    def _begin(self) -> UnitOfWork:
        self._connection = self._engine.connect()
        if self.read_only:
            self._connection.execution_options(**{READ_ONLY: True})
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
        if self._connection is None or self._transaction is None:
            return  # idle and not used since: nothing is held
        try:
            if self._transaction.is_active:
                self._transaction.rollback()
        finally:
            self._connection.close()
            self._release()

    @property
    def bind(self) -> Engine:
        """The database engine this unit of work runs on."""
        return self._engine

    @contextmanager
    def idle(self) -> Iterator[None]:
        """Commit what was done so far and give the connection (and on SQLite this process's
        writer queue) back while the block runs: for waiting on work another thread does in
        the same database. The next use of the unit of work begins a new transaction; a unit
        of work not used again costs nothing more."""
        if self._connection is None or self._transaction is None:
            yield  # not begun (or idle already): nothing is held
            return
        if self.read_only:
            self._transaction.rollback()
        else:
            self._transaction.commit()
        self._connection.close()
        self._connection = self._transaction = None
        self._release()
        for name in _REPOSITORIES:
            self.__dict__.pop(name, None)
        yield

    def _resume(self) -> None:
        if self._connection is None:
            self._start()

    def __getattr__(self, name: str) -> Any:
        """A repository of an idle unit of work: begin again, then hand it out."""
        if name in _REPOSITORIES and self.__dict__.get("_engine") is not None \
                and self.__dict__.get("_connection") is None:
            self._resume()
            return self.__dict__[name]
        raise AttributeError(name)

    def commit(self, *, again: bool = True) -> None:
        """Keep everything done so far; later work starts a new transaction (unless not
        ``again``: then the unit of work is done)."""
        self._resume()
        assert self._connection is not None and self._transaction is not None
        if self.read_only:
            raise SlicelabError("a read-only unit of work cannot commit")
        self._transaction.commit()
        if again:
            self._transaction = self._connection.begin()

    def rollback(self) -> None:
        self._resume()
        assert self._connection is not None and self._transaction is not None
        self._transaction.rollback()
        self._transaction = self._connection.begin()


    def savepoint(self) -> NestedTransaction:
        """A savepoint: its ``rollback()`` undoes what was done since (and on PostgreSQL
        lets go of the row locks taken since); its ``commit()`` keeps it in the transaction."""
        self._resume()
        assert self._connection is not None and self._transaction is not None
        return self._connection.begin_nested()


UnitOfWorkFactory = Callable[[], UnitOfWork]


class _EngineUnits:
    """Units of work on one engine; also :meth:`read_only` ones."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self) -> UnitOfWork:
        return UnitOfWork(self.engine)

    def read_only(self) -> UnitOfWork:
        return UnitOfWork(self.engine, read_only=True)


def unit_of_work_factory(engine: Engine) -> UnitOfWorkFactory:
    return _EngineUnits(engine)


def read_only(factory: UnitOfWorkFactory) -> UnitOfWork:
    """A read-only unit of work from ``factory`` when it makes them (those of
    :func:`unit_of_work_factory` do), else an ordinary one (fakes in tests)."""
    maker = getattr(factory, "read_only", None)
    if callable(maker):
        made: UnitOfWork = maker()
        return made
    return factory()
