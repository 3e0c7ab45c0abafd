"""The caller's SSH public keys."""

from __future__ import annotations

from fastapi import APIRouter

from slicelab.services import keys as service

from ..deps import CallerDep, UowDep
from .models import KeyIn, KeyOut, PageOut
from .owned import add_owned_routes

__all__ = ["router"]

router = APIRouter(tags=["keys"])


@router.post("/keys", status_code=201, summary="Add an SSH public key")
def add_key(body: KeyIn, uow: UowDep, caller: CallerDep) -> KeyOut:
    return KeyOut.of(service.add_key(uow, caller, key=body.key, name=body.name))


add_owned_routes(
    router,
    path="/keys",
    out=KeyOut.of,
    page=PageOut[KeyOut],
    lister=service.list_keys,
    remover=service.delete_key,
    names=("list_keys", "delete_key"),
    summaries=("List the caller's SSH keys", "Remove one of the caller's SSH keys"),
)
