"""Request dependencies: the unit of work, the caller (from the bearer token) and paging."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from slicelab.domain.errors import AuthenticationFailed
from slicelab.domain.roles import Caller
from slicelab.services.tokens import authenticate
from slicelab.settings import Settings
from slicelab.store.uow import UnitOfWork, UnitOfWorkFactory, read_only

__all__ = ["CallerDep", "Paging", "PagingDep", "ReadCallerDep", "ReadUowDep", "SettingsDep",
           "UowDep"]

MAX_OFFSET = 1_000_000_000


def _uow(request: Request) -> Iterator[UnitOfWork]:
    factory: UnitOfWorkFactory = request.app.state.uow_factory
    with factory() as uow:
        yield uow


def _read_uow(request: Request) -> Iterator[UnitOfWork]:
    """A read-only unit of work (on SQLite it takes no write lock): for routes that only read,
    or whose writes another component makes (allocation goes through the allocation engine)."""
    with read_only(request.app.state.uow_factory) as uow:
        yield uow


def _settings(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings


UowDep = Annotated[UnitOfWork, Depends(_uow)]
ReadUowDep = Annotated[UnitOfWork, Depends(_read_uow)]
SettingsDep = Annotated[Settings, Depends(_settings)]


def _caller(request: Request, uow: UowDep) -> Caller:
    return _authenticated(request, uow)


def _read_caller(request: Request, uow: ReadUowDep) -> Caller:
    return _authenticated(request, uow)


def _authenticated(request: Request, uow: UnitOfWork) -> Caller:
    client_ip = request.client.host if request.client else None
    header = request.headers.get("authorization")
    if header is None:
        return Caller(client_ip=client_ip)
    scheme, _, secret = header.partition(" ")
    if scheme.lower() != "bearer" or not secret.strip():
        raise AuthenticationFailed("the Authorization header must be 'Bearer <token>'",
                                   field="Authorization")
    return authenticate(uow, secret.strip(), client_ip=client_ip)


CallerDep = Annotated[Caller, Depends(_caller)]
ReadCallerDep = Annotated[Caller, Depends(_read_caller)]


@dataclass(frozen=True, slots=True)
class Paging:
    limit: int
    offset: int


def _paging(limit: Annotated[int, Query(ge=1, le=500, description="items per page")] = 50,
            offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items to skip")] = 0
            ) -> Paging:
    return Paging(limit, offset)


PagingDep = Annotated[Paging, Depends(_paging)]
