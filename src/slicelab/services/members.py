"""Members: create (with a first token), read, list."""

from __future__ import annotations

from collections.abc import Iterable

from slicelab.domain.errors import Conflict
from slicelab.domain.members import ApiToken, Member, PlatformRole
from slicelab.domain.roles import Caller, Operation, Target, authorize
from slicelab.store.base import Page
from slicelab.store.uow import UnitOfWork

from .audit import me, record, utcnow
from .tokens import issue

__all__ = ["create_member", "get_member", "list_members", "whoami"]


def create_member(uow: UnitOfWork, caller: Caller, *, name: str, email: str,
                  can_lead: bool = False, roles: Iterable[PlatformRole] = (),
                  token_days: int = 90) -> tuple[Member, ApiToken, str]:
    """Add a member; return it with its first API token and that token's secret."""
    authorize(Operation.MEMBER_CREATE, caller)
    member = Member(name=name, email=email, created=utcnow(), can_lead=can_lead,
                    roles=frozenset(roles))
    if uow.members.find(name) is not None:
        raise Conflict(f"member {name!r} exists already", field="name")
    member = uow.members.add(member)
    token, secret = issue(uow, member, name="initial", days=token_days)
    record(uow, caller, Operation.MEMBER_CREATE, f"member {name}",
           f"roles={sorted(member.roles)} can_lead={can_lead}")
    uow.commit()
    return member, token, secret


def whoami(caller: Caller) -> Member:
    authorize(Operation.WHOAMI, caller)
    return me(caller)


def list_members(uow: UnitOfWork, caller: Caller, *, limit: int, offset: int) -> Page[Member]:
    authorize(Operation.MEMBER_LIST, caller)
    return uow.members.list(limit=limit, offset=offset)


def get_member(uow: UnitOfWork, caller: Caller, name: str) -> Member:
    authorize(Operation.MEMBER_READ, caller, Target(member=name))
    return uow.members.get(name)
