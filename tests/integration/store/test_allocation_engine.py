"""The allocation engine: concurrent jobs batched into few transactions, each placed whole or
refused with its own diagnosis, never more booked than fits, the free-node index current;
two engines with snapshots of their own on one database (as two server processes) never
double-book and see each other's leases, renewals and releases."""

from __future__ import annotations

import gc
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import Engine
from test_lease_world import World, one_node

from slicelab.domain.calendar import Window
from slicelab.domain.errors import InsufficientResources, PolicyViolation, Unavailable
from slicelab.domain.inventory import SiteLimits
from slicelab.domain.quotas import ProjectQuota
from slicelab.services import booking
from slicelab.services.allocation import allocate
from slicelab.services.booking import AllocationEngine, Batch, Reply, engine_for
from slicelab.services.inventory import index_nodes
from slicelab.services.leases import LeaseWindow, Renewal, renew_lease
from slicelab.services.topology_apply import (
    ALLOCATED,
    parse_topology,
    release_slice,
    write_topology,
)
from slicelab.store.engine import make_engine
from slicelab.store.leases import LeaseRow, SitePolicy
from slicelab.store.uow import UnitOfWorkFactory, read_only, unit_of_work_factory

HOUR = timedelta(hours=1)


def _book(name: str, window: Window, cores: int = 1) -> Callable[[Batch], LeaseRow]:
    topology = parse_topology(one_node(cores=cores))

    def job(batch: Batch) -> LeaseRow:
        item = batch.uow.slices.get("p", name)
        lease, _ = batch.book(item, topology, window, sliver_ids={"n1": f"s-{name}"})
        return lease
    return job


def _outcome(engine: AllocationEngine, job: Callable[[Batch], Any]) -> str:
    try:
        engine.run(job, timeout=120)
    except InsufficientResources:
        return "refused"
    return "granted"


@pytest.fixture
def second(database: tuple[str, str | None], engine: Engine) -> Iterator[UnitOfWorkFactory]:
    """Units of work on a database engine of their own, as in another server process."""
    url, schema = database
    other = make_engine(url, schema=schema)
    try:
        yield unit_of_work_factory(other)
    finally:
        other.dispose()


@pytest.fixture
def engines(uow_factory: UnitOfWorkFactory, second: UnitOfWorkFactory
            ) -> Iterator[tuple[AllocationEngine, AllocationEngine]]:
    pair = (AllocationEngine(uow_factory), AllocationEngine(second))
    for e in pair:
        e.start()
    try:
        yield pair
    finally:
        for e in pair:
            e.stop()


def _index(uow_factory: UnitOfWorkFactory) -> None:
    with uow_factory() as uow:
        index_nodes(uow)
        uow.commit()


def test_concurrent_jobs_are_batched_and_never_overbook(uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, slices=30)  # 3 hosts x 4 cores
    _index(uow_factory)
    engine = AllocationEngine(uow_factory)
    engine.start()
    window = Window.of(datetime.now(UTC) + HOUR, HOUR)
    try:
        with ThreadPoolExecutor(30) as pool:
            outcomes = list(pool.map(lambda k: _outcome(engine, _book(f"s{k}", window)),
                                     range(30)))
    finally:
        engine.stop()
    assert outcomes.count("granted") == 12
    assert engine.batches < 30
    world.assert_never_oversubscribed()
    with uow_factory() as uow:
        free = uow.inventory.free_nodes(parse_topology(one_node()).nodes[0].resources)
    assert free == []  # the index knows every host is full from now on


def test_a_failing_job_is_rolled_back_alone(uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, slices=2)
    _index(uow_factory)
    engine = AllocationEngine(uow_factory)
    engine.start()
    window = Window.of(datetime.now(UTC) + HOUR, HOUR)
    book = _book("s0", window, cores=4)

    def broken(batch: Batch) -> None:
        book(batch)
        raise RuntimeError("the job fails after booking")

    try:
        with pytest.raises(RuntimeError):
            engine.run(broken, timeout=60)
        assert world.rows() == []
        for k in range(3):  # the snapshot let go of the broken job's booking too
            engine.run(_book("s1", window, cores=4) if k == 0 else _book("s0", window, 4),
                       timeout=60)
    finally:
        engine.stop()
    assert len(world.rows()) == 3
    world.assert_never_oversubscribed()


def test_two_engines_never_double_book(uow_factory: UnitOfWorkFactory,
                                       engines: tuple[AllocationEngine, AllocationEngine]
                                       ) -> None:
    world = World(uow_factory, slices=40)
    _index(uow_factory)
    window = Window.of(datetime.now(UTC) + HOUR, HOUR)
    for e in engines:
        e.warm()  # both snapshots are loaded before either books: each must catch up
    with ThreadPoolExecutor(40) as pool:
        outcomes = list(pool.map(
            lambda k: _outcome(engines[k % 2], _book(f"s{k}", window)), range(40)))
    assert outcomes.count("granted") == 12
    assert len(world.rows()) == 12
    world.assert_never_oversubscribed()


def test_renewals_and_releases_of_one_are_seen_by_the_other(
        uow_factory: UnitOfWorkFactory,
        engines: tuple[AllocationEngine, AllocationEngine]) -> None:
    world = World(uow_factory, hosts=1, slices=3)
    _index(uow_factory)
    first, other = engines
    start = datetime.now(UTC) + HOUR
    other.warm()
    lease = first.run(_book("s0", Window.of(start, HOUR), cores=4), timeout=60)
    assert _outcome(other, _book("s1", Window.of(start, HOUR), cores=4)) == "refused"
    with uow_factory() as uow:
        renew_lease(uow, uow.slices.get("p", "s0"), lease.id, Renewal(by=HOUR))
    assert _outcome(other, _book("s1", Window.of(start + HOUR, HOUR), cores=4)) == "refused"
    with uow_factory() as uow:
        release_slice(uow, world.ctx, world.caller, "p", "s0")
    assert _outcome(other, _book("s1", Window.of(start, HOUR), cores=4)) == "granted"
    assert _outcome(first, _book("s2", Window.of(start, HOUR), cores=4)) == "refused"
    world.assert_never_oversubscribed()


def test_a_failed_job_gives_back_the_subnet_it_named(uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, slices=2)
    _index(uow_factory)
    named = {"nodes": [{"name": "a"}, {"name": "b"}],
             "links": [{"name": "l1", "members": ["a:10.30.0.1/24", "b"]}]}
    window = Window.of(datetime.now(UTC) + HOUR, HOUR)
    engine = AllocationEngine(uow_factory)
    engine.start()

    def job(name: str, *, fail: bool) -> Callable[[Batch], Any]:
        def run(batch: Batch) -> Any:
            item = batch.uow.slices.get("p", name)
            written = write_topology(batch, world.ctx, item, parse_topology(named),
                                     state=ALLOCATED, window=window, additive=True)
            if fail:
                raise RuntimeError("refused after the links were allocated")
            return written
        return run

    try:
        with pytest.raises(RuntimeError):
            engine.run(job("s0", fail=True), timeout=60)
        written = engine.run(job("s1", fail=False), timeout=60)
    finally:
        engine.stop()
    assert [lk.subnet for lk in written.links] == ["10.30.0.0/24"]
    world.assert_never_oversubscribed()


def test_a_caller_gets_its_jobs_result_or_error_and_a_clear_timeout() -> None:
    reply: Reply[int] = Reply()
    with pytest.raises(Unavailable, match="did not answer in time"):
        reply.result(timeout=0.01)
    threading.Timer(0.05, reply.give, args=(7,)).start()
    assert reply.result(timeout=10) == 7
    assert reply.result() == 7  # asked again: the same answer
    failed: Reply[int] = Reply()
    failed.fail(InsufficientResources("no host fits"))
    with pytest.raises(InsufficientResources, match="no host fits"):
        failed.result()


def test_a_large_snapshot_is_frozen_and_the_old_one_freed_on_reload(
        uow_factory: UnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    World(uow_factory, slices=1)
    _index(uow_factory)
    monkeypatch.setattr(booking, "FREEZE_AT", 1)  # this world's few nodes count as large
    engine = AllocationEngine(uow_factory)
    engine.start()
    try:
        engine.warm()
        assert gc.get_freeze_count() > 0
        old = engine._snap
        assert old is not None
        gone = weakref.ref(old.calendar)
        del old
        engine._snap = None  # as after a batch that failed whole: the next one reloads
        engine.warm()
        assert gone() is None  # the old snapshot's cycles were collected
        assert gc.get_freeze_count() > 0
    finally:
        engine.stop()
        gc.unfreeze()


def _allocate(world: World, name: str, cores: int, when: LeaseWindow) -> str:
    try:
        with read_only(world.uow_factory) as uow:  # as REST allocate: the engine writes
            allocate(uow, world.ctx, world.caller, "p", name, one_node(cores=cores), when=when)
    except InsufficientResources:
        return "refused"
    return "granted"


def test_allocations_are_placed_ahead_and_never_overbook(uow_factory: UnitOfWorkFactory
                                                         ) -> None:
    world = World(uow_factory, slices=40)  # 3 hosts x 4 cores
    _index(uow_factory)
    when = LeaseWindow(start=datetime.now(UTC) + HOUR, duration=HOUR)
    with uow_factory() as uow:
        engine = engine_for(uow)
    engine._pipeline = True  # on SQLite too (by default only on PostgreSQL)
    assert _allocate(world, "s0", 1, when) == "granted"  # loads what is kept across batches
    with ThreadPoolExecutor(39) as pool:
        outcomes = list(pool.map(lambda k: _allocate(world, f"s{k}", 1, when), range(1, 40)))
    assert outcomes.count("granted") == 11
    assert engine.ahead > 0  # written while the next batch placed
    assert len(world.rows()) == 12
    world.assert_never_oversubscribed()


def test_batches_placed_ahead_are_freed_once_written(uow_factory: UnitOfWorkFactory) -> None:
    """A batch placed ahead reads the batches in flight, but does not keep them once placed
    (else each would keep all before it: the process's memory and every full collection of
    the garbage collector would grow with the allocations made)."""
    world = World(uow_factory, slices=160)
    _index(uow_factory)
    when = LeaseWindow(start=datetime.now(UTC) + HOUR, duration=HOUR)
    with uow_factory() as uow:
        engine = engine_for(uow)
    engine._pipeline = True  # on SQLite too (by default only on PostgreSQL)
    assert _allocate(world, "s0", 1, when) == "granted"
    gc.collect()
    before = _batches()  # other tests' engines may keep their last ones
    with ThreadPoolExecutor(6) as pool:
        list(pool.map(lambda k: _allocate(world, f"s{k}", 1, when), range(1, 160)))
    assert engine.ahead > 2 * booking.AHEAD + 4  # a long run of batches placed ahead
    gc.collect()
    assert _batches() - before <= booking.AHEAD + 2  # those still in flight, the last one


def _batches() -> int:
    return sum(isinstance(o, Batch) for o in gc.get_objects())


def test_a_writer_between_makes_a_batch_placed_ahead_run_again(
        uow_factory: UnitOfWorkFactory, second: UnitOfWorkFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """s1 is placed ahead while s0 is written; another process books the host after that
    but before s1's batch takes the lock: s1 runs again under the lock and is refused."""
    world = World(uow_factory, hosts=1, slices=3)  # 1 host x 4 cores
    other = World.__new__(World)
    other.__dict__.update(world.__dict__, uow_factory=second)
    _index(uow_factory)
    when = LeaseWindow(start=datetime.now(UTC) + HOUR, duration=HOUR)
    with uow_factory() as uow:
        engine = engine_for(uow)
    engine._pipeline = True  # on SQLite too (by default only on PostgreSQL)
    one, commit = AllocationEngine._one, AllocationEngine._commit
    jobs, placed, commits, between = [], threading.Event(), [], []

    def one_and_tell(self: AllocationEngine, *args: Any) -> Any:
        done = one(self, *args)
        if self is engine:
            jobs.append(done)
            if len(jobs) == 2:
                placed.set()  # s1 is placed ahead, s0 not written yet
        return done

    def commit_in_turn(self: AllocationEngine, handed: Any) -> Any:
        if self is engine:
            commits.append(handed)
            if len(commits) == 1:
                assert placed.wait(60)
            elif len(commits) == 2:  # s1, before the writer takes the lock for it
                between.append(_allocate(other, "s2", 3, when))
        return commit(self, handed)

    monkeypatch.setattr(AllocationEngine, "_one", one_and_tell)
    monkeypatch.setattr(AllocationEngine, "_commit", commit_in_turn)
    again = engine.again
    with ThreadPoolExecutor(1) as pool:
        first = pool.submit(_allocate, world, "s0", 1, when)
        while not engine._inflight:  # s0 placed and handed to the writer, which waits
            time.sleep(0.01)
        assert _allocate(world, "s1", 3, when) == "refused"
        assert first.result(60) == "granted"
    assert between == ["granted"]
    assert engine.again == again + 1
    world.assert_never_oversubscribed()
    assert len(world.rows()) == 2  # s0 and s2


def test_quotas_and_site_limits_set_between_batches_are_seen(uow_factory: UnitOfWorkFactory
                                                             ) -> None:
    """The engine keeps quotas and site limits across batches; setting one is in the change
    log, so the next batch reads them again."""
    world = World(uow_factory, slices=4)
    _index(uow_factory)
    when = LeaseWindow(start=datetime.now(UTC) + HOUR, duration=HOUR)
    assert _allocate(world, "s0", 1, when) == "granted"
    with uow_factory() as uow:
        uow.leases.quotas.put("p", ProjectQuota(cores=1.5))
        uow.commit()
    with pytest.raises(PolicyViolation, match="cores"):
        _allocate(world, "s1", 1, when)
    with uow_factory() as uow:
        uow.leases.quotas.put("p", ProjectQuota())
        uow.leases.site_limits.put("lab", SitePolicy(SiteLimits(cores_per_sliver=0.5)))
        uow.commit()
    with pytest.raises(PolicyViolation, match="lab"):
        _allocate(world, "s2", 1, when)
    with uow_factory() as uow:
        uow.leases.site_limits.put("lab", SitePolicy(SiteLimits()))
        uow.commit()
    assert _allocate(world, "s3", 1, when) == "granted"
    world.assert_never_oversubscribed()
