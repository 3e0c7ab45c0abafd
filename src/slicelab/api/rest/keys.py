"""The caller's SSH public keys."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from slicelab.services import keys as service

from ..deps import CallerDep, PagingDep, UowDep
from .models import KeyIn, KeyOut, PageOut, page_of

__all__ = ["router"]

router = APIRouter(tags=["keys"])
IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/keys", status_code=201, summary="Add an SSH public key")
def add_key(body: KeyIn, uow: UowDep, caller: CallerDep) -> KeyOut:
    return KeyOut.of(service.add_key(uow, caller, key=body.key, name=body.name))


@router.get("/keys", summary="List the caller's SSH keys")
def list_keys(uow: UowDep, caller: CallerDep, paging: PagingDep) -> PageOut[KeyOut]:
    page = service.list_keys(uow, caller, limit=paging.limit, offset=paging.offset)
    return page_of(page, [KeyOut.of(k) for k in page.items])


@router.delete("/keys/{id}", status_code=204, response_class=Response,
               summary="Remove one of the caller's SSH keys")
def delete_key(id: IdPath, uow: UowDep, caller: CallerDep) -> None:
    service.delete_key(uow, caller, id)
