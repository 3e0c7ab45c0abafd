"""The audit log (admin)."""

from __future__ import annotations

from fastapi import APIRouter

from slicelab.services import audit as service

from ..deps import CallerDep, PagingDep, UowDep
from .models import AuditOut, PageOut, page_of

__all__ = ["router"]

router = APIRouter(tags=["audit"])


@router.get("/audit", summary="The audit log, newest first (admin)")
def list_audit(uow: UowDep, caller: CallerDep, paging: PagingDep) -> PageOut[AuditOut]:
    page = service.list_audit(uow, caller, limit=paging.limit, offset=paging.offset)
    return page_of(page, [AuditOut.of(e) for e in page.items])
