"""The caller's API tokens."""

from __future__ import annotations

from fastapi import APIRouter

from slicelab.services import tokens as service

from ..deps import CallerDep, UowDep
from .models import PageOut, TokenCreated, TokenIn, TokenOut
from .owned import add_owned_routes

__all__ = ["router"]

router = APIRouter(tags=["tokens"])


@router.post("/tokens", status_code=201, summary="Issue an API token (its secret is shown once)")
def issue_token(body: TokenIn, uow: UowDep, caller: CallerDep) -> TokenCreated:
    token, secret = service.issue_token(uow, caller, name=body.name, days=body.expires_in_days)
    assert token.id is not None
    return TokenCreated(id=token.id, name=token.name, token=secret, expires=token.expires)


add_owned_routes(
    router,
    path="/tokens",
    out=TokenOut.of,
    page=PageOut[TokenOut],
    lister=service.list_tokens,
    remover=service.revoke_token,
    names=("list_tokens", "revoke_token"),
    summaries=(
        "List the caller's API tokens (never their secrets)",
        "Revoke one of the caller's API tokens",
    ),
)
