"""Recording and reading the audit log."""

from __future__ import annotations

from datetime import UTC, datetime

from slicelab.domain.audit import AuditEntry
from slicelab.domain.members import Member
from slicelab.domain.roles import Caller, Operation, authorize
from slicelab.store.base import Page
from slicelab.store.uow import UnitOfWork

__all__ = ["list_audit", "me", "record", "utcnow"]


def utcnow() -> datetime:
    return datetime.now(UTC)


def me(caller: Caller) -> Member:
    """The calling member; only for operations :func:`authorize` admitted for members."""
    assert caller.member is not None, "authorize() first"
    return caller.member


def record(uow: UnitOfWork, caller: Caller, operation: Operation, target: str,
           detail: str = "") -> None:
    uow.audit.add(AuditEntry(actor=caller.name, operation=operation.value, target=target,
                             at=utcnow(), client_ip=caller.client_ip, detail=detail))


def list_audit(uow: UnitOfWork, caller: Caller, *, limit: int, offset: int) -> Page[AuditEntry]:
    authorize(Operation.AUDIT_READ, caller)
    return uow.audit.list(limit=limit, offset=offset)
