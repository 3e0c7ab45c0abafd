"""What an allocation batch reads before its jobs run (one round trip on PostgreSQL): the
projects named with their memberships, the slices named with their members, their slivers and
those of slices given by id; the same on both databases, what does not exist left out."""

from __future__ import annotations

from datetime import UTC, datetime

from test_lease_world import World

from slicelab.domain.members import Member
from slicelab.domain.projects import Project, ProjectRole
from slicelab.store.aggregate import SliverRow
from slicelab.store.allocation_reads import read_for_allocation
from slicelab.store.uow import UnitOfWorkFactory


def _sliver(sid: int, name: str, k: int) -> SliverRow:
    return SliverRow(f"s-{name}{k}", sid, "p", name, "n-0000", f"n{k}", {"cores": 1.0},
                     {"control": {"first_port": 30000 + k}}, "geni_allocated",
                     "geni_pending_allocation")


def _world(uow_factory: UnitOfWorkFactory) -> dict[str, int]:
    World(uow_factory, hosts=1, slices=3)
    now = datetime.now(UTC)
    with uow_factory() as uow:
        for name in ("ann", "bob"):
            uow.members.add(Member(name=name, email=f"{name}@example.org", created=now))
        other = Project(name="q", description="another", created=now)
        other.add("root", ProjectRole.PI)
        other.add("ann", ProjectRole.MEMBER)
        other.invite("bob")  # not a membership: not read
        uow.projects.add(other)
        ids = {n: uow.slices.get("p", n).id for n in ("s0", "s1", "s2")}
        item = uow.slices.get("p", "s1")
        item.members.add("ann")
        uow.slices.save(item)
        uow.aggregate.slivers.add_many([_sliver(ids["s1"], "s1", k) for k in range(2)],
                                       created=now)
        uow.aggregate.slivers.add_many([_sliver(ids["s2"], "s2", 0)], created=now)
        uow.commit()
    return {n: i for n, i in ids.items() if i is not None}


def test_one_read_gives_projects_slices_and_slivers(uow_factory: UnitOfWorkFactory) -> None:
    ids = _world(uow_factory)
    with uow_factory() as uow:
        found = read_for_allocation(uow.slices.connection, {"q", "nope"},
                                    {("p", "s0"), ("p", "s1"), ("q", "s0"), ("p", "gone")},
                                    {ids["s2"]})
    assert set(found.projects) == {"q"}
    assert found.projects["q"].memberships == {"root": ProjectRole.PI, "ann": ProjectRole.MEMBER}
    assert found.projects["q"].invitations == set()
    assert set(found.slices) == {("p", "s0"), ("p", "s1")}
    s1 = found.slices[("p", "s1")]
    assert (s1.id, s1.members, s1.creator) == (ids["s1"], {"root", "ann"}, "root")
    assert s1.expires.tzinfo == UTC and s1.created.tzinfo == UTC
    assert found.slivers == {
        ids["s1"]: [_sliver(ids["s1"], "s1", 0), _sliver(ids["s1"], "s1", 1)],
        ids["s2"]: [_sliver(ids["s2"], "s2", 0)]}


def test_nothing_named_reads_nothing(uow_factory: UnitOfWorkFactory) -> None:
    _world(uow_factory)
    with uow_factory() as uow:
        found = read_for_allocation(uow.slices.connection, set(), set())
    assert (found.projects, found.slices, found.slivers) == ({}, {}, {})
