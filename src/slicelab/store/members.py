"""Repositories of members, their SSH keys and their API tokens."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import delete, select, update

from slicelab.domain.errors import NotFound
from slicelab.domain.members import ApiToken, Member, PlatformRole, SSHKey

from .base import Page, Repository
from .tables import api_tokens, members, ssh_keys

__all__ = ["KeyRepository", "MemberRepository", "TokenRepository"]


def _member(row: Any) -> Member:
    return Member(name=row.name, email=row.email, created=row.created, can_lead=row.can_lead,
                  roles=frozenset(PlatformRole(r) for r in row.roles), id=row.id)


class MemberRepository(Repository):
    def add(self, member: Member) -> Member:
        values = {"name": member.name, "email": member.email, "can_lead": member.can_lead,
                  "roles": sorted(r.value for r in member.roles), "created": member.created}
        with self.unique(f"member {member.name!r}"):
            result = self.connection.execute(members.insert().values(**values))
        return member.with_id(result.inserted_primary_key[0])

    def find(self, name: str) -> Member | None:
        row = self.connection.execute(select(members).where(members.c.name == name)).first()
        return _member(row) if row else None

    def get(self, name: str, *, field: str = "name") -> Member:
        member = self.find(name)
        if member is None:
            raise NotFound(f"no member {name!r}", field=field)
        return member

    def by_id(self, member_id: int) -> Member:
        row = self.connection.execute(select(members).where(members.c.id == member_id)).one()
        return _member(row)

    def list(self, *, limit: int, offset: int) -> Page[Member]:
        query = select(members).order_by(members.c.name)
        rows = self.connection.execute(query.limit(limit).offset(offset))
        return Page([_member(r) for r in rows], self.count(query), limit, offset)

    def admins(self) -> list[Member]:
        rows = self.connection.execute(select(members).order_by(members.c.id))
        return [m for m in map(_member, rows) if m.is_admin]

    def ids(self, names: set[str]) -> dict[str, int]:
        if not names:
            return {}
        query = select(members.c.name, members.c.id).where(members.c.name.in_(names))
        return {row.name: row.id for row in self.connection.execute(query)}


def _key(row: Any) -> SSHKey:
    return SSHKey(member=row.member, name=row.name, type=row.type, fingerprint=row.fingerprint,
                  bits=row.bits, public_key=row.public_key, created=row.created, id=row.id)


def _key_query() -> Any:
    return (select(ssh_keys, members.c.name.label("member"))
            .join(members, members.c.id == ssh_keys.c.member_id))


class KeyRepository(Repository):
    def add(self, key: SSHKey, *, member_id: int) -> SSHKey:
        with self.unique(f"a key with fingerprint {key.fingerprint}", field="key"):
            result = self.connection.execute(ssh_keys.insert().values(
                member_id=member_id, name=key.name, type=key.type, fingerprint=key.fingerprint,
                bits=key.bits, public_key=key.public_key, created=key.created))
        return SSHKey(**{**_fields(key), "id": result.inserted_primary_key[0]})

    def list(self, member: str, *, limit: int, offset: int) -> Page[SSHKey]:
        query = _key_query().where(members.c.name == member).order_by(ssh_keys.c.id)
        rows = self.connection.execute(query.limit(limit).offset(offset))
        return Page([_key(r) for r in rows], self.count(query), limit, offset)

    def get(self, member: str, key_id: int) -> SSHKey:
        query = _key_query().where(members.c.name == member, ssh_keys.c.id == key_id)
        row = self.connection.execute(query).first()
        if row is None:
            raise NotFound(f"{member!r} has no key {key_id}", field="id")
        return _key(row)

    def delete(self, key_id: int) -> None:
        self.connection.execute(delete(ssh_keys).where(ssh_keys.c.id == key_id))


def _fields(obj: Any) -> dict[str, Any]:
    return {name: getattr(obj, name) for name in obj.__dataclass_fields__}


def _token(row: Any) -> ApiToken:
    return ApiToken(member=row.member, name=row.name, token_hash=row.token_hash,
                    created=row.created, expires=row.expires, revoked=row.revoked, id=row.id)


def _token_query() -> Any:
    return (select(api_tokens, members.c.name.label("member"))
            .join(members, members.c.id == api_tokens.c.member_id))


class TokenRepository(Repository):
    def add(self, token: ApiToken, *, member_id: int) -> ApiToken:
        with self.unique("that token", field="token"):
            result = self.connection.execute(api_tokens.insert().values(
                member_id=member_id, name=token.name, token_hash=token.token_hash,
                created=token.created, expires=token.expires, revoked=token.revoked))
        return ApiToken(**{**_fields(token), "id": result.inserted_primary_key[0]})

    def by_hash(self, token_hash: str) -> ApiToken | None:
        query = _token_query().where(api_tokens.c.token_hash == token_hash)
        row = self.connection.execute(query).first()
        return _token(row) if row else None

    def list(self, member: str, *, limit: int, offset: int) -> Page[ApiToken]:
        query = _token_query().where(members.c.name == member).order_by(api_tokens.c.id)
        rows = self.connection.execute(query.limit(limit).offset(offset))
        return Page([_token(r) for r in rows], self.count(query), limit, offset)

    def get(self, member: str, token_id: int) -> ApiToken:
        query = _token_query().where(members.c.name == member, api_tokens.c.id == token_id)
        row = self.connection.execute(query).first()
        if row is None:
            raise NotFound(f"{member!r} has no token {token_id}", field="id")
        return _token(row)

    def revoke(self, token_id: int, when: datetime) -> None:
        self.connection.execute(update(api_tokens).where(api_tokens.c.id == token_id)
                                .values(revoked=when))
