"""API tokens: issue (shown once), list, revoke, and authenticate a request by its token."""

from __future__ import annotations

from datetime import datetime, timedelta

from slicelab.domain.errors import AuthenticationFailed
from slicelab.domain.members import ApiToken, Member
from slicelab.domain.roles import Caller, Operation, authorize
from slicelab.identity.tokens import hash_token, new_token
from slicelab.store.base import Page
from slicelab.store.uow import UnitOfWork

from .audit import me, record, utcnow

__all__ = ["authenticate", "issue", "issue_token", "list_tokens", "revoke_token"]


def issue(uow: UnitOfWork, member: Member, *, name: str, days: int,
          now: datetime | None = None) -> tuple[ApiToken, str]:
    """Store a new token of ``member``; return it and its secret (not committed)."""
    created = now or utcnow()
    secret = new_token()
    token = ApiToken(member=member.name, name=name, token_hash=hash_token(secret),
                     created=created, expires=created + timedelta(days=days))
    assert member.id is not None
    return uow.tokens.add(token, member_id=member.id), secret


def issue_token(uow: UnitOfWork, caller: Caller, *, name: str,
                days: int) -> tuple[ApiToken, str]:
    authorize(Operation.TOKEN_ISSUE, caller)
    token, secret = issue(uow, me(caller), name=name, days=days)
    record(uow, caller, Operation.TOKEN_ISSUE, f"token {token.id}", name)
    uow.commit()
    return token, secret


def list_tokens(uow: UnitOfWork, caller: Caller, *, limit: int, offset: int) -> Page[ApiToken]:
    authorize(Operation.TOKEN_LIST, caller)
    return uow.tokens.list(me(caller).name, limit=limit, offset=offset)


def revoke_token(uow: UnitOfWork, caller: Caller, token_id: int) -> None:
    authorize(Operation.TOKEN_REVOKE, caller)
    token = uow.tokens.get(me(caller).name, token_id)
    if token.revoked is None:
        uow.tokens.revoke(token_id, utcnow())
        record(uow, caller, Operation.TOKEN_REVOKE, f"token {token_id}", token.name)
        uow.commit()


def authenticate(uow: UnitOfWork, secret: str, *, client_ip: str | None = None,
                 now: datetime | None = None) -> Caller:
    """The caller a token secret stands for; raise saying if it is unknown, expired or revoked."""
    token = uow.tokens.by_hash(hash_token(secret))
    if token is None:
        raise AuthenticationFailed("unknown token", field="Authorization")
    token.check(now or utcnow())
    return Caller(member=uow.members.get(token.member), client_ip=client_ip)
