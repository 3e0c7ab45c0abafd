"""The caller's API tokens."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from slicelab.services import tokens as service

from ..deps import CallerDep, PagingDep, UowDep
from .models import PageOut, TokenCreated, TokenIn, TokenOut, page_of

__all__ = ["router"]

router = APIRouter(tags=["tokens"])
IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


@router.post("/tokens", status_code=201, summary="Issue an API token (its secret is shown once)")
def issue_token(body: TokenIn, uow: UowDep, caller: CallerDep) -> TokenCreated:
    token, secret = service.issue_token(uow, caller, name=body.name, days=body.expires_in_days)
    assert token.id is not None
    return TokenCreated(id=token.id, name=token.name, token=secret, expires=token.expires)


@router.get("/tokens", summary="List the caller's API tokens (never their secrets)")
def list_tokens(uow: UowDep, caller: CallerDep, paging: PagingDep) -> PageOut[TokenOut]:
    page = service.list_tokens(uow, caller, limit=paging.limit, offset=paging.offset)
    return page_of(page, [TokenOut.of(t) for t in page.items])


@router.delete("/tokens/{id}", status_code=204, response_class=Response,
               summary="Revoke one of the caller's API tokens")
def revoke_token(id: IdPath, uow: UowDep, caller: CallerDep) -> None:
    service.revoke_token(uow, caller, id)
