"""The caller's own SSH public keys."""

from __future__ import annotations

from slicelab.domain.errors import Conflict
from slicelab.domain.members import SSHKey
from slicelab.domain.roles import Caller, Operation, authorize
from slicelab.identity.sshkeys import parse_public_key
from slicelab.store.base import Page
from slicelab.store.uow import UnitOfWork

from .audit import me, record, utcnow

__all__ = ["add_key", "delete_key", "list_keys"]


def add_key(uow: UnitOfWork, caller: Caller, *, key: str, name: str | None = None) -> SSHKey:
    authorize(Operation.KEY_ADD, caller)
    owner = me(caller)
    parsed = parse_public_key(key)
    label = name or parsed.comment[:100] or parsed.fingerprint
    if any(k.fingerprint == parsed.fingerprint
           for k in uow.keys.list(owner.name, limit=10_000, offset=0).items):
        raise Conflict(f"key {parsed.fingerprint} is registered already", field="key")
    assert owner.id is not None
    stored = uow.keys.add(SSHKey(member=owner.name, name=label, type=parsed.type,
                                 fingerprint=parsed.fingerprint, bits=parsed.bits,
                                 public_key=parsed.public_key, created=utcnow()),
                          member_id=owner.id)
    record(uow, caller, Operation.KEY_ADD, f"key {stored.id}", parsed.fingerprint)
    uow.commit()
    return stored


def list_keys(uow: UnitOfWork, caller: Caller, *, limit: int, offset: int) -> Page[SSHKey]:
    authorize(Operation.KEY_LIST, caller)
    return uow.keys.list(me(caller).name, limit=limit, offset=offset)


def delete_key(uow: UnitOfWork, caller: Caller, key_id: int) -> None:
    authorize(Operation.KEY_DELETE, caller)
    key = uow.keys.get(me(caller).name, key_id)
    uow.keys.delete(key_id)
    record(uow, caller, Operation.KEY_DELETE, f"key {key_id}", key.fingerprint)
    uow.commit()
