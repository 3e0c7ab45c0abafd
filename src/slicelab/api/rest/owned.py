"""The two routes every collection of the caller's own credentials has: list, remove by id.

SSH keys and API tokens both belong to the calling member alone; each adds these routes to
its router with :func:`add_owned_routes`. (No ``from __future__ import annotations`` here:
FastAPI reads the endpoints' annotations, which name values known only in the closure.)
"""

from collections.abc import Callable
from typing import Annotated, Any, Protocol

from fastapi import APIRouter, Path, Response

from slicelab.domain.roles import Caller
from slicelab.store.base import Page
from slicelab.store.uow import UnitOfWork

from ..deps import CallerDep, PagingDep, UowDep
from .models import PageOut, page_of

__all__ = ["IdPath", "add_owned_routes"]

IdPath = Annotated[int, Path(ge=1, le=2**31 - 1)]


class Lister(Protocol):
    def __call__(
        self, uow: UnitOfWork, caller: Caller, *, limit: int, offset: int
    ) -> Page[Any]: ...


def add_owned_routes(
    router: APIRouter,
    *,
    path: str,
    out: Callable[[Any], object],
    page: type[PageOut[Any]],
    lister: Lister,
    remover: Callable[[UnitOfWork, Caller, int], None],
    names: tuple[str, str],
    summaries: tuple[str, str],
) -> None:
    """``GET path`` (a ``page`` of ``out(item)``) and ``DELETE path/{id}`` (204) on ``router``."""

    def list_owned(uow: UowDep, caller: CallerDep, paging: PagingDep) -> Any:
        found = lister(uow, caller, limit=paging.limit, offset=paging.offset)
        return page_of(found, [out(item) for item in found.items])

    def remove_owned(id: IdPath, uow: UowDep, caller: CallerDep) -> None:
        remover(uow, caller, id)

    router.add_api_route(
        path,
        list_owned,
        methods=["GET"],
        name=names[0],
        summary=summaries[0],
        response_model=page,
    )
    router.add_api_route(
        f"{path}/{{id}}",
        remove_owned,
        methods=["DELETE"],
        name=names[1],
        summary=summaries[1],
        status_code=204,
        response_class=Response,
    )
