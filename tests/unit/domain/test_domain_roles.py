"""The permission table and its one enforcement point."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from slicelab.domain.errors import AuthenticationFailed, PermissionDenied
from slicelab.domain.members import Member, PlatformRole
from slicelab.domain.projects import Project, ProjectRole
from slicelab.domain.roles import (
    PERMISSIONS,
    Caller,
    Operation,
    Role,
    Scope,
    Target,
    authorize,
    roles_of,
)

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def member(name: str, *roles: PlatformRole, can_lead: bool = False) -> Caller:
    return Caller(Member(name=name, email=f"{name}@example.org", created=NOW,
                         can_lead=can_lead, roles=frozenset(roles)))


ADMIN = member("root", PlatformRole.ADMIN)
OPERATOR = member("ops", PlatformRole.OPERATOR)
PI = member("pat", can_lead=True)
ALICE = member("alice")
BOB = member("bob")
ANON = Caller()


def project() -> Project:
    p = Project(name="proj", description="", created=NOW)
    p.add("pat", ProjectRole.PI)
    p.add("alice")
    return p


def test_every_operation_has_a_rule() -> None:
    assert set(PERMISSIONS) == set(Operation)


def test_roles_depend_on_scope() -> None:
    p = project()
    assert Role.PI in roles_of(PI, Scope.PLATFORM)
    assert Role.PI in roles_of(PI, Scope.PROJECT, p)
    assert Role.PI not in roles_of(ALICE, Scope.PROJECT, p)
    assert Role.MEMBER in roles_of(ALICE, Scope.PROJECT, p)
    assert Role.MEMBER not in roles_of(BOB, Scope.PROJECT, p)
    assert Role.MEMBER in roles_of(BOB, Scope.PLATFORM)
    assert roles_of(ANON, Scope.PLATFORM) == {Role.ANONYMOUS}


ALLOWED = [
    (Operation.HEALTH, ANON, None),
    (Operation.MEMBER_CREATE, ADMIN, None),
    (Operation.MEMBER_LIST, OPERATOR, None),
    (Operation.MEMBER_READ, ALICE, Target(member="alice")),
    (Operation.PROJECT_CREATE, PI, None),
    (Operation.PROJECT_READ, ALICE, "project"),
    (Operation.PROJECT_READ, OPERATOR, "project"),
    (Operation.PROJECT_INVITE, PI, "project"),
    (Operation.PROJECT_INVITE, ADMIN, "project"),
    (Operation.SLICE_CREATE, ALICE, "project"),
    (Operation.SLICE_DELETE, PI, "project"),
    (Operation.SLICE_DELETE, ALICE, "creator"),
    (Operation.AUDIT_READ, ADMIN, None),
]
DENIED = [
    (Operation.MEMBER_CREATE, PI, None),
    (Operation.MEMBER_LIST, ALICE, None),
    (Operation.MEMBER_READ, ALICE, Target(member="bob")),
    (Operation.PROJECT_CREATE, ALICE, None),
    (Operation.PROJECT_READ, BOB, "project"),
    (Operation.PROJECT_INVITE, ALICE, "project"),
    (Operation.PROJECT_APPROVE, OPERATOR, "project"),
    (Operation.SLICE_CREATE, BOB, "project"),
    (Operation.SLICE_DELETE, ALICE, "project"),
    (Operation.AUDIT_READ, OPERATOR, None),
]


def _target(spec: object) -> Target | None:
    if spec == "project":
        return Target(project=project())
    if spec == "creator":
        return Target(project=project(), creator="alice")
    assert spec is None or isinstance(spec, Target)
    return spec


@pytest.mark.parametrize(("op", "caller", "target"), ALLOWED)
def test_allowed(op: Operation, caller: Caller, target: object) -> None:
    authorize(op, caller, _target(target))


@pytest.mark.parametrize(("op", "caller", "target"), DENIED)
def test_denied(op: Operation, caller: Caller, target: object) -> None:
    with pytest.raises(PermissionDenied, match=op.value):
        authorize(op, caller, _target(target))


@pytest.mark.parametrize("op", [o for o in Operation if o is not Operation.HEALTH])
def test_anonymous_must_authenticate(op: Operation) -> None:
    with pytest.raises(AuthenticationFailed, match="Bearer"):
        authorize(op, ANON, Target(project=project()))
