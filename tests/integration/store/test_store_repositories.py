"""Repositories and the unit of work, on SQLite and PostgreSQL (see tests/conftest.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy import Engine, func, select

from slicelab.domain.audit import AuditEntry
from slicelab.domain.errors import Conflict, NotFound
from slicelab.domain.members import ApiToken, Member, PlatformRole, SSHKey
from slicelab.domain.projects import Project, ProjectRole
from slicelab.domain.slices import Slice, slice_urn
from slicelab.store.tables import members, projects
from slicelab.store.uow import UnitOfWorkFactory

NOW = datetime(2025, 1, 1, 12, tzinfo=UTC)


def count(engine: Engine, table: object) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())  # type: ignore[arg-type]


def add_member(uow_factory: UnitOfWorkFactory, name: str, **kw: object) -> Member:
    with uow_factory() as uow:
        member = uow.members.add(Member(name=name, email=f"{name}@example.org", created=NOW,
                                        **kw))  # type: ignore[arg-type]
        uow.commit()
    return member


def test_member_round_trip_keeps_roles_and_utc(uow_factory: UnitOfWorkFactory) -> None:
    add_member(uow_factory, "alice", can_lead=True, roles=frozenset({PlatformRole.OPERATOR}))
    with uow_factory() as uow:
        got = uow.members.get("alice")
    assert got.can_lead and got.roles == {PlatformRole.OPERATOR}
    assert got.created == NOW and got.created.tzinfo is not None
    assert got.created.utcoffset() == timedelta(0)


def test_non_utc_times_are_stored_as_the_same_instant(uow_factory: UnitOfWorkFactory) -> None:
    local = NOW.astimezone(timezone(timedelta(hours=5)))
    with uow_factory() as uow:
        uow.members.add(Member(name="zed", email="z@example.org", created=local))
        uow.commit()
    with uow_factory() as uow:
        assert uow.members.get("zed").created == NOW


def test_unit_of_work_rolls_back_unless_committed(uow_factory: UnitOfWorkFactory,
                                                 engine: Engine) -> None:
    with uow_factory() as uow:
        uow.members.add(Member(name="ghost", email="g@example.org", created=NOW))
    assert count(engine, members) == 0
    with pytest.raises(RuntimeError), uow_factory() as uow:
        uow.members.add(Member(name="ghost", email="g@example.org", created=NOW))
        raise RuntimeError("boom")
    assert count(engine, members) == 0


def test_rollback_keeps_what_was_committed_before(uow_factory: UnitOfWorkFactory,
                                                  engine: Engine) -> None:
    with uow_factory() as uow:
        uow.members.add(Member(name="kept", email="k@example.org", created=NOW))
        uow.commit()
        uow.members.add(Member(name="lost", email="l@example.org", created=NOW))
    with uow_factory() as uow:
        assert uow.members.find("kept") and uow.members.find("lost") is None


def test_duplicate_member_is_a_conflict_and_the_transaction_goes_on(
        uow_factory: UnitOfWorkFactory, engine: Engine) -> None:
    add_member(uow_factory, "alice")
    with uow_factory() as uow:
        with pytest.raises(Conflict, match="alice"):
            uow.members.add(Member(name="alice", email="x@example.org", created=NOW))
        uow.members.add(Member(name="bob", email="b@example.org", created=NOW))
        uow.commit()
    assert count(engine, members) == 2


def test_keys_and_tokens(uow_factory: UnitOfWorkFactory) -> None:
    alice = add_member(uow_factory, "alice")
    assert alice.id is not None
    key = SSHKey(member="alice", name="laptop", type="ssh-ed25519", fingerprint="SHA256:x",
                 bits=256, public_key="ssh-ed25519 AAAA", created=NOW)
    token = ApiToken(member="alice", name="ci", token_hash="h" * 64, created=NOW,
                     expires=NOW + timedelta(days=1))
    with uow_factory() as uow:
        stored = uow.keys.add(key, member_id=alice.id)
        with pytest.raises(Conflict):
            uow.keys.add(key, member_id=alice.id)
        tok = uow.tokens.add(token, member_id=alice.id)
        uow.tokens.revoke(tok.id or 0, NOW)
        uow.commit()
    with uow_factory() as uow:
        assert uow.keys.get("alice", stored.id or 0).fingerprint == "SHA256:x"
        assert uow.keys.list("alice", limit=10, offset=0).total == 1
        found = uow.tokens.by_hash("h" * 64)
        assert found is not None and found.revoked == NOW and found.member == "alice"
        with pytest.raises(NotFound):
            uow.tokens.get("bob", tok.id or 0)


def test_project_aggregate_round_trip_and_uniqueness(uow_factory: UnitOfWorkFactory,
                                                     engine: Engine) -> None:
    for name in ("pat", "alice", "bob", "carol"):
        add_member(uow_factory, name)
    with uow_factory() as uow:
        p = Project(name="proj", description="d", created=NOW)
        p.add("pat", ProjectRole.PI)
        p.invite("alice")
        p.join("bob")
        uow.projects.add(p)
        uow.commit()
    with uow_factory() as uow:
        p = uow.projects.get("proj")
        assert p.memberships == {"pat": ProjectRole.PI}
        assert p.invitations == {"alice"} and p.requests == {"bob"}
        p.join("alice")
        uow.projects.save(p)
        with pytest.raises(Conflict):
            uow.projects.add(Project(name="proj", description="", created=NOW))
        uow.commit()
    with uow_factory() as uow:
        assert uow.projects.get("proj").role_of("alice") is ProjectRole.MEMBER
        assert [x.name for x in uow.projects.list(member="alice", limit=5, offset=0).items] \
            == ["proj"]
        assert uow.projects.list(member="carol", limit=5, offset=0).total == 0
    assert count(engine, projects) == 1


def test_slices_unique_per_project_and_members(uow_factory: UnitOfWorkFactory) -> None:
    add_member(uow_factory, "pat")
    add_member(uow_factory, "alice")
    with uow_factory() as uow:
        p = Project(name="proj", description="", created=NOW)
        p.add("pat", ProjectRole.PI)
        p.add("alice")
        uow.projects.add(p)
        s = Slice(project="proj", name="exp", urn=slice_urn("a.org", "proj", "exp"),
                  created=NOW, expires=NOW + timedelta(days=7), creator="pat", members={"pat"})
        uow.slices.add(s, project_id=p.id or 0)
        twin = Slice(project="proj", name="exp", urn=slice_urn("b.org", "proj", "exp"),
                     created=NOW, expires=NOW + timedelta(days=7), creator="pat")
        with pytest.raises(Conflict):
            uow.slices.add(twin, project_id=p.id or 0)
        uow.commit()
    with uow_factory() as uow:
        s = uow.slices.get("proj", "exp")
        assert s.creator == "pat" and s.members == {"pat"}
        s.add_member("alice", project_members={"pat", "alice"})
        s.expires = NOW + timedelta(days=9)
        uow.slices.save(s)
        uow.commit()
    with uow_factory() as uow:
        s = uow.slices.get("proj", "exp")
        assert s.members == {"pat", "alice"} and s.expires == NOW + timedelta(days=9)
        assert uow.slices.list(projects_in=["proj"], limit=5, offset=0).total == 1
        assert uow.slices.list(projects_in=[], limit=5, offset=0).total == 0
        uow.slices.delete(s)
        uow.commit()
    with uow_factory() as uow, pytest.raises(NotFound):
        uow.slices.get("proj", "exp")


def test_paging_and_audit_order(uow_factory: UnitOfWorkFactory) -> None:
    for name in ("a1", "a2", "a3"):
        add_member(uow_factory, name)
    with uow_factory() as uow:
        for i in range(3):
            uow.audit.add(AuditEntry(actor="a1", operation="op", target=f"t{i}",
                                     at=NOW, client_ip="127.0.0.1"))
        uow.commit()
        page = uow.members.list(limit=2, offset=1)
        assert ([m.name for m in page.items], page.total) == (["a2", "a3"], 3)
        assert [e.target for e in uow.audit.list(limit=2, offset=0).items] == ["t2", "t1"]
