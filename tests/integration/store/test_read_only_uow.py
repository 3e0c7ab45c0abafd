"""Read-only units of work: on SQLite they begin without the write lock, so a reader neither
waits for a writer nor blocks one; they cannot commit; on PostgreSQL they read as usual."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import pytest

from slicelab.domain.errors import SlicelabError
from slicelab.domain.nodes import Site, site_urn
from slicelab.store.uow import UnitOfWorkFactory, read_only


def _site(uow_factory: UnitOfWorkFactory, name: str) -> None:
    with uow_factory() as uow:
        uow.aggregate.sites.add(Site(name=name, urn=site_urn("t", name),
                                     created=datetime.now(UTC)))
        uow.commit()


def test_a_reader_does_not_wait_for_a_writer(uow_factory: UnitOfWorkFactory) -> None:
    _site(uow_factory, "lab")
    with uow_factory() as writer:  # holds the write lock on SQLite (BEGIN IMMEDIATE)
        writer.aggregate.sites.add(Site(name="edge", urn=site_urn("t", "edge"),
                                        created=datetime.now(UTC)))
        start = time.monotonic()
        with read_only(uow_factory) as reader:
            names = [s.name for s in reader.aggregate.sites.list()]
        assert time.monotonic() - start < 2  # a write UoW would wait the busy timeout (10 s)
        assert names == ["lab"]  # the writer's row is not committed yet
        writer.commit()
    with read_only(uow_factory) as reader:
        assert [s.name for s in reader.aggregate.sites.list()] == ["edge", "lab"]


def test_a_writer_does_not_wait_for_a_reader(uow_factory: UnitOfWorkFactory) -> None:
    _site(uow_factory, "lab")
    with read_only(uow_factory) as reader:
        assert [s.name for s in reader.aggregate.sites.list()] == ["lab"]
        start = time.monotonic()
        _site(uow_factory, "edge")
        assert time.monotonic() - start < 2


def test_a_read_only_unit_cannot_commit(uow_factory: UnitOfWorkFactory) -> None:
    with read_only(uow_factory) as reader, pytest.raises(SlicelabError, match="read-only"):
        reader.commit()


def test_a_factory_without_read_only_units_gives_ordinary_ones(
        uow_factory: UnitOfWorkFactory) -> None:
    plain: UnitOfWorkFactory = lambda: uow_factory()  # noqa: E731  (a fake's factory)
    with read_only(plain) as uow:
        assert not uow.read_only


def test_a_read_only_unit_takes_a_connection_only_when_used(
        uow_factory: UnitOfWorkFactory) -> None:
    _site(uow_factory, "lab")
    with read_only(uow_factory) as reader:
        pool = reader.bind.pool
        before = pool.checkedout()  # type: ignore[attr-defined]
        with reader.idle():  # waiting on another thread's work: nothing held, nothing begun
            assert pool.checkedout() == before  # type: ignore[attr-defined]
        assert pool.checkedout() == before  # type: ignore[attr-defined]
        assert [s.name for s in reader.aggregate.sites.list()] == ["lab"]
        assert pool.checkedout() == before + 1  # type: ignore[attr-defined]
    assert pool.checkedout() == before  # type: ignore[attr-defined]
