"""Members: whoami, create (admin), list and read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from slicelab.domain.members import PlatformRole
from slicelab.services import members as service

from ..deps import CallerDep, PagingDep, SettingsDep, UowDep
from .models import MemberCreated, MemberIn, MemberName, MemberOut, PageOut, page_of

__all__ = ["router"]

router = APIRouter(tags=["members"])
NamePath = Annotated[MemberName, Path()]


@router.get("/whoami", summary="The calling member")
def whoami(caller: CallerDep) -> MemberOut:
    return MemberOut.of(service.whoami(caller))


@router.post("/members", status_code=201, summary="Create a member (admin)")
def create_member(body: MemberIn, uow: UowDep, caller: CallerDep,
                  settings: SettingsDep) -> MemberCreated:
    member, _token, secret = service.create_member(
        uow, caller, name=body.name, email=body.email, can_lead=body.can_lead,
        roles=[PlatformRole(r) for r in body.roles], token_days=settings.token_days)
    return MemberCreated(member=MemberOut.of(member), token=secret)


@router.get("/members", summary="List members (admin, operator)")
def list_members(uow: UowDep, caller: CallerDep, paging: PagingDep) -> PageOut[MemberOut]:
    page = service.list_members(uow, caller, limit=paging.limit, offset=paging.offset)
    return page_of(page, [MemberOut.of(m) for m in page.items])


@router.get("/members/{name}", summary="Read a member (self, admin, operator)")
def get_member(name: NamePath, uow: UowDep, caller: CallerDep) -> MemberOut:
    return MemberOut.of(service.get_member(uow, caller, name))
