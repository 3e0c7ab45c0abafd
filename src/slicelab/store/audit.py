"""The audit log repository: append and page through, newest first."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from slicelab.domain.audit import AuditEntry

from .base import Page, Repository
from .tables import audit_log

__all__ = ["AuditRepository"]


def _entry(row: Any) -> AuditEntry:
    return AuditEntry(actor=row.actor, operation=row.operation, target=row.target, at=row.at,
                      client_ip=row.client_ip, detail=row.detail, id=row.id)


class AuditRepository(Repository):
    def add(self, entry: AuditEntry) -> None:
        self.connection.execute(audit_log.insert().values(
            at=entry.at, actor=entry.actor, operation=entry.operation, target=entry.target,
            client_ip=entry.client_ip, detail=entry.detail))

    def list(self, *, limit: int, offset: int) -> Page[AuditEntry]:
        query = select(audit_log).order_by(audit_log.c.id.desc())
        rows = self.connection.execute(query.limit(limit).offset(offset))
        return Page([_entry(r) for r in rows], self.count(query), limit, offset)
