"""Members, projects and slices as domain objects."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slicelab.domain.errors import (
    AuthenticationFailed,
    Conflict,
    InvalidInput,
    InvalidName,
    NotFound,
    PolicyViolation,
)
from slicelab.domain.members import ApiToken, Member
from slicelab.domain.projects import JoinOutcome, Project, ProjectRole
from slicelab.domain.slices import Slice, slice_urn

NOW = datetime(2025, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(("name", "email", "error"), [
    ("Alice", "a@b.org", InvalidName), ("alice", "not-an-email", InvalidInput),
    ("1alice", "a@b.org", InvalidName), ("alice", "a@b", InvalidInput),
])
def test_member_rules(name: str, email: str, error: type[Exception]) -> None:
    with pytest.raises(error):
        Member(name=name, email=email, created=NOW)


def test_invited_member_joins_at_once() -> None:
    p = Project(name="proj", description="", created=NOW)
    p.add("pat", ProjectRole.PI)
    p.invite("alice")
    assert p.join("alice") is JoinOutcome.JOINED
    assert p.role_of("alice") is ProjectRole.MEMBER and not p.invitations


def test_uninvited_member_files_a_request_that_a_pi_approves() -> None:
    p = Project(name="proj", description="", created=NOW)
    assert p.join("bob") is JoinOutcome.REQUESTED
    assert p.requests == {"bob"} and p.role_of("bob") is None
    p.approve("bob")
    assert p.role_of("bob") is ProjectRole.MEMBER and not p.requests
    with pytest.raises(NotFound):
        p.approve("carol")
    with pytest.raises(Conflict):
        p.invite("bob")


def test_slice_members_must_be_project_members() -> None:
    s = Slice(project="proj", name="exp", urn=slice_urn("a.org", "proj", "exp"), created=NOW,
              expires=NOW + timedelta(days=1), creator="pat", members={"pat"})
    with pytest.raises(PolicyViolation, match="project members"):
        s.add_member("eve", project_members={"pat"})
    s.add_member("alice", project_members={"pat", "alice"})
    assert s.members == {"pat", "alice"}


def test_token_check_says_why() -> None:
    token = ApiToken(member="a", name="ci", token_hash="x", created=NOW,
                     expires=NOW + timedelta(days=1))
    token.check(NOW)
    with pytest.raises(AuthenticationFailed, match="expired"):
        token.check(NOW + timedelta(days=2))
    revoked = ApiToken(member="a", name="ci", token_hash="x", created=NOW,
                       expires=NOW + timedelta(days=1), revoked=NOW)
    with pytest.raises(AuthenticationFailed, match="revoked"):
        revoked.check(NOW)
