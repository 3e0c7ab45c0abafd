"""The allocation engine's bulk writes (slivers, links, leases with bookings, the free-node
index) read back exactly as written, whether through the repositories or through
``LeaseStore.write_batch`` (one round trip on PostgreSQL); the change log records every
booking and link change, once; ``lock_since`` is ``lock`` then ``since``."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import select, text
from test_lease_world import World

from slicelab.domain.calendar import Booking, Window
from slicelab.domain.errors import Conflict, NotFound
from slicelab.domain.quotas import ProjectQuota
from slicelab.domain.resources import Resources
from slicelab.services.inventory import index_nodes
from slicelab.store import leases as store_leases
from slicelab.store.aggregate import LinkRow, SliverRow
from slicelab.store.inventory import CapacityRow
from slicelab.store.inventory_tables import node_capacity, node_devices
from slicelab.store.leases import BOOKINGS_CHANGED, LINK_CHANGED, LeaseRow
from slicelab.store.uow import UnitOfWork, UnitOfWorkFactory

START = datetime(2031, 1, 1, 12, 0, 0, 123456, tzinfo=UTC)
WINDOW = Window(START, START + timedelta(hours=4))
HOUR = timedelta(hours=1)


@pytest.fixture
def world(uow_factory: UnitOfWorkFactory) -> Iterator[World]:
    built = World(uow_factory, hosts=3, slices=3)
    with uow_factory() as uow:
        index_nodes(uow)
        uow.commit()
    yield built


def _slice_id(uow: UnitOfWork, name: str) -> int:
    found = uow.slices.get("p", name).id
    assert found is not None
    return found


def _rows(uow: UnitOfWork, name: str, tag: str) -> tuple[list[SliverRow], list[LinkRow],
                                                          list[tuple[LeaseRow, tuple[Booking,
                                                                                     ...]]]]:
    sid = _slice_id(uow, name)
    slivers = [SliverRow(f"s-{tag}{k}", sid, "p", name, f"n-{k:04x}", f"n{k}",
                         {"cores": 1.0, "devices": [], "site": None},
                         {"control": {"first_port": 30000 + k}, "name": "é \"q\" \\",
                          "list": [1, 2.5, None, True]},
                         "geni_allocated", "geni_pending_allocation",
                         ssh_port=None if k else 2222) for k in range(2)]
    links = [LinkRow(f"l-{tag}", sid, "l0", 4000 + len(tag) + ord(tag[0]), "10.9.0.0/24", None,
                     {"nodes": ["n0", "n1"]}, (f"s-{tag}0", f"s-{tag}1"))]
    lease = LeaseRow(f"L-{tag}", sid, "p", name, WINDOW, "active", False, START)
    books = (Booking(lease.id, "n-0000", str(sid), WINDOW, Resources.of(cores=1, memory_mib=512),
                     False, 0, f"s-{tag}0"),
             Booking(lease.id, "n-0001", str(sid), WINDOW,
                     Resources(2000, 1024, 3, 10, (("gpu", 1),)), True, 100, None))
    return slivers, links, [(lease, books)]


def _free(uow: UnitOfWork) -> list[CapacityRow]:
    return [CapacityRow("n-0000", _site(uow), True, Resources.of(cores=4, memory_mib=4096),
                        Resources(3000, 3584, 100)),
            CapacityRow("n-0001", _site(uow), False, Resources.of(cores=4, memory_mib=4096),
                        Resources(0, 7, 1))]


def _site(uow: UnitOfWork) -> int:
    return uow.inventory.site_ids()["lab"]


def _write(uow: UnitOfWork, how: str, name: str, tag: str) -> int:
    slivers, links, leases = _rows(uow, name, tag)
    if how == "batch":
        return uow.leases.write_batch(slivers=slivers, links=links, leases=leases,
                                      free=_free(uow), created=START)
    uow.aggregate.slivers.add_many(slivers, created=START)
    uow.aggregate.links.add_many(links)
    uow.leases.leases.add_many(leases)
    uow.inventory.set_free(_free(uow))
    return uow.leases.changes.last()


@pytest.mark.parametrize("how", ["batch", "repositories"])
def test_what_is_written_reads_back_the_same(world: World, how: str) -> None:
    with world.uow_factory() as uow:
        before = uow.leases.changes.last()
        last = _write(uow, how, "s0", "a")
        uow.commit()
    with world.uow_factory() as uow:
        slivers, links, leases = _rows(uow, "s0", "a")
        assert uow.aggregate.slivers.of_slice(slivers[0].slice_id) == slivers
        assert uow.aggregate.links.of_slice(slivers[0].slice_id) == links
        lease, books = leases[0]
        assert uow.leases.leases.get(lease.id) == lease
        assert uow.leases.leases.bookings_of([lease.id]) == list(books)
        assert len(uow.leases.leases.overlapping(Window(WINDOW.end - timedelta(microseconds=1),
                                                        WINDOW.end + timedelta(hours=1)))) == 2
        assert uow.leases.leases.overlapping(Window(WINDOW.end, WINDOW.end + HOUR)) == []
        assert last == uow.leases.changes.last()
        changes = uow.leases.changes.since(before)
        assert {(c.node_id, c.kind) for c in changes} == {
            ("n-0000", BOOKINGS_CHANGED), ("n-0001", BOOKINGS_CHANGED), ("l-a", LINK_CHANGED)}
        assert sum(c.kind == LINK_CHANGED for c in changes) == 1
        conn = uow.leases.connection
        free = {r.node_id: (r.available, r.free_cpu_milli, r.free_memory_mib, r.free_disk_gib)
                for r in conn.execute(select(node_capacity))}
        assert free["n-0000"] == (True, 3000, 3584, 100)
        assert free["n-0001"] == (False, 0, 7, 1)
        assert free["n-0002"] == (True, 4000, 4096, 100)  # untouched


def test_bulk_times_are_stored_as_single_inserts_store_them(world: World) -> None:
    """The text SQLite compares in window queries must be the one SQLAlchemy writes."""
    with world.uow_factory() as uow:
        sid = _slice_id(uow, "s1")
        other = timezone(timedelta(hours=2))
        window = Window(START.astimezone(other), WINDOW.end)
        one = LeaseRow("L-one", sid, "p", "s1", window, "active", True, START)
        uow.leases.leases.add(one, [])
        uow.leases.leases.add_many([(LeaseRow("L-many", sid, "p", "s1", window, "active", True,
                                              START), ())])
        found = uow.leases.connection.execute(text(
            'SELECT id, start, "end", created FROM leases ORDER BY id')).all()
        assert found[0][1:] == found[1][1:]


def test_naive_times_are_refused(world: World) -> None:
    with world.uow_factory() as uow:
        sid = _slice_id(uow, "s1")
        with pytest.raises(ValueError, match="naive"):  # a Window refuses them itself
            uow.leases.leases.add_many([(LeaseRow("L-x", sid, "p", "s1", WINDOW, "active",
                                                  False, datetime(2031, 1, 1)), ())])


@pytest.mark.parametrize("how", ["batch", "repositories"])
def test_an_existing_sliver_or_link_is_a_conflict(world: World, how: str) -> None:
    with world.uow_factory() as uow:
        _write(uow, how, "s0", "a")
        uow.commit()
    with world.uow_factory() as uow, pytest.raises(Conflict):
        _write(uow, how, "s0", "a")
    with world.uow_factory() as uow:  # the link alone: same slice and client id
        slivers, links, _ = _rows(uow, "s0", "b")
        with pytest.raises(Conflict) as caught:
            if how == "batch":
                uow.leases.write_batch(slivers=[], links=links, leases=[], free=[],
                                       created=START)
            else:
                uow.aggregate.links.add_many(links)
        assert caught.value.field == "links"


def test_links_are_logged_once_each_added_and_removed_and_not_when_none_is(
        world: World) -> None:
    with world.uow_factory() as uow:
        before = uow.leases.changes.last()
        _write(uow, "repositories", "s0", "a")
        _write(uow, "repositories", "s1", "b")
        uow.aggregate.links.delete(["l-none"])
        uow.commit()
    with world.uow_factory() as uow:
        added = [c for c in uow.leases.changes.since(before) if c.kind == LINK_CHANGED]
        assert sorted(c.node_id for c in added) == ["l-a", "l-b"]
        mark = uow.leases.changes.last()
        uow.aggregate.links.delete(["l-a", "l-none"])
        uow.slices.delete(uow.slices.get("p", "s1"))  # its link goes by cascade
        uow.commit()
    with world.uow_factory() as uow:
        gone = [c.node_id for c in uow.leases.changes.since(mark) if c.kind == LINK_CHANGED]
        assert sorted(gone) == ["l-a", "l-b"]


def test_lock_since_is_lock_then_since(world: World, uow_factory: UnitOfWorkFactory) -> None:
    with uow_factory() as uow:
        mark = uow.leases.changes.last()
        _write(uow, "batch", "s0", "a")
        uow.commit()
    with uow_factory() as uow:
        pruned, changes = uow.leases.changes.lock_since(mark)
        assert pruned == 0
        assert changes == uow.leases.changes.since(mark)
        assert len(changes) == 3
        assert uow.leases.changes.lock_since(changes[-1].id) == (0, [])


def _write_checked(uow: UnitOfWork, name: str, tag: str, *, after: int,
                   commit: bool = False) -> int:
    slivers, links, leases = _rows(uow, name, tag)
    return uow.leases.write_batch(slivers=slivers, links=links, leases=leases, free=[],
                                  created=START, unchanged_since=after, commit=commit)


def _count(uow: UnitOfWork, table: str) -> int:
    return int(uow.leases.connection.execute(text(f"SELECT count(*) FROM {table}")).scalar())


def test_a_batch_checked_against_a_change_writes_only_while_nothing_came_after(
        world: World) -> None:
    """``unchanged_since``: the lock, the check and the writes (and the commit) go together;
    a change after the one given (another writer's) fails the check and writes nothing."""
    with world.uow_factory() as uow:
        mark = uow.leases.changes.last()
        last = _write_checked(uow, "s0", "a", after=mark, commit=True)
        uow.commit()
    with world.uow_factory() as uow:
        assert last == uow.leases.changes.last() > mark
        assert (_count(uow, "slivers"), _count(uow, "leases"), _count(uow, "bookings")) == \
            (2, 1, 2)
        with pytest.raises(store_leases.BookingsChanged, match=f"after change {mark}"):
            _write_checked(uow, "s1", "b", after=mark, commit=True)  # "a" came after mark
    with world.uow_factory() as uow:  # nothing of "b" was written
        assert (_count(uow, "slivers"), _count(uow, "leases"), _count(uow, "bookings"),
                _count(uow, "slice_links")) == (2, 1, 2, 1)
        assert uow.leases.changes.last() == last
        _write_checked(uow, "s1", "b", after=last)  # against the latest change: written
        uow.commit()
    with world.uow_factory() as uow:
        assert _count(uow, "slivers") == 4


def test_a_check_after_pruned_changes_fails(world: World) -> None:
    with world.uow_factory() as uow:
        _write(uow, "batch", "s0", "a")
        uow.commit()
    with world.uow_factory() as uow:
        uow.leases.changes.lock()
        uow.leases.changes.prune(keep=0)
        last = uow.leases.changes.last()
        uow.commit()
    with world.uow_factory() as uow:
        assert last == 0  # all pruned: the log is empty, but a reader at 1 is behind
        with pytest.raises(store_leases.BookingsChanged):
            _write_checked(uow, "s1", "b", after=1)


def test_a_batch_of_nothing_writes_nothing(world: World) -> None:
    with world.uow_factory() as uow:
        last = uow.leases.changes.last()
        assert uow.leases.write_batch(slivers=[], links=[], leases=[], free=[],
                                      created=START) == last
        assert uow.leases.connection.execute(select(node_devices)).all() == []


def test_a_quota_is_read_with_one_query_none_set_or_no_project(world: World) -> None:
    with world.uow_factory() as uow:
        quotas = uow.leases.quotas
        assert quotas.get("p") == ProjectQuota()
        quota = ProjectQuota(cores=2.5, memory_mib=4096, slivers=3, concurrent_leases=2,
                             longest_lease=timedelta(hours=5), book_ahead=None)
        quotas.put("p", quota)
        assert quotas.get("p") == quota
        with pytest.raises(NotFound):
            quotas.get("nope")


def test_foreign_key_checks_stay_index_lookups_as_a_fresh_table_grows(
        world: World, uow_factory: UnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """PostgreSQL plans a foreign-key check once per connection and keeps the plan until the
    table is analyzed again: planned while the table is small, it is a sequential scan.
    ``write_batch`` has it planned again as its leases grow, so checking each booking
    against ``leases`` stays an index lookup, not a scan of every lease, even when the
    table grows much faster than autovacuum analyzes it."""
    with uow_factory() as uow:
        if uow.bind.dialect.name != "postgresql":
            pytest.skip("a PostgreSQL planner matter")
        monkeypatch.setattr(store_leases, "_written", [0])  # as in a fresh process
        sid, scans = _slice_id(uow, "s0"), _leases_scanned(uow)
        uow.commit()
        written = 0
        for start in range(0, 3000, 100):
            leases = [(LeaseRow(f"L-g{k}", sid, "p", "s0", WINDOW, "active", False, START),
                       (Booking(f"L-g{k}", "n-0000", str(sid), WINDOW, Resources(1, 1, 0),
                                False, 0, None),)) for k in range(start, start + 100)]
            uow.leases.write_batch(slivers=[], links=[], leases=leases, free=[], created=START)
            uow.commit()
            written += len(leases)
            if written == 100:  # as autovacuum would, once the table had its first rows
                uow.leases.connection.exec_driver_sql("ANALYZE leases")
        scanned = _leases_scanned(uow) - scans
    assert written == 3000
    assert scanned < 20 * written  # a scan each would read ~1,500 leases per booking


def _leases_scanned(uow: UnitOfWork) -> int:
    """Rows of ``leases`` read by sequential scans so far (this connection's counts too)."""
    uow.leases.connection.exec_driver_sql("SELECT pg_stat_force_next_flush()")
    uow.commit()  # the counts are flushed when the transaction ends
    uow.leases.connection.exec_driver_sql("SELECT pg_stat_clear_snapshot()")
    return int(uow.leases.connection.exec_driver_sql(
        "SELECT coalesce(sum(seq_tup_read), 0) FROM pg_stat_user_tables "
        "WHERE relname = 'leases' AND schemaname = current_schema()").scalar_one())
