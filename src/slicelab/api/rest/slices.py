"""Slices: create, list, read, renew, delete, add members."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Request, Response

from slicelab.services import slices as service
from slicelab.services.provisioning import refresh_desired

from ..deps import CallerDep, PagingDep, SettingsDep, UowDep
from .models import (
    PageOut,
    ProjectName,
    SliceIn,
    SliceMemberIn,
    SliceName,
    SliceOut,
    SliceRenewIn,
    page_of,
)

__all__ = ["router"]

router = APIRouter(tags=["slices"])
ProjectPath = Annotated[ProjectName, Path()]
SlicePath = Annotated[SliceName, Path()]


@router.post("/projects/{project}/slices", status_code=201,
             summary="Create a slice (project members)")
def create_slice(project: ProjectPath, body: SliceIn, uow: UowDep, caller: CallerDep,
                 settings: SettingsDep) -> SliceOut:
    item = service.create_slice(uow, caller, project, name=body.name,
                                authority=settings.authority, policy=settings.expiry,
                                expires=body.expires, days=body.days)
    return SliceOut.of(item)


@router.get("/slices", summary="Slices of the caller's projects (admins and operators: all)")
def list_slices(uow: UowDep, caller: CallerDep, paging: PagingDep,
                project: Annotated[ProjectName | None, Query()] = None) -> PageOut[SliceOut]:
    page = service.list_slices(uow, caller, project=project, limit=paging.limit,
                               offset=paging.offset)
    return page_of(page, [SliceOut.of(s) for s in page.items])


@router.get("/projects/{project}/slices/{name}", summary="Read a slice")
def get_slice(project: ProjectPath, name: SlicePath, uow: UowDep,
              caller: CallerDep) -> SliceOut:
    return SliceOut.of(service.get_slice(uow, caller, project, name))


@router.post("/projects/{project}/slices/{name}/renew",
             summary="Renew a slice; answers with the expiry granted")
def renew_slice(project: ProjectPath, name: SlicePath, body: SliceRenewIn, uow: UowDep,
                caller: CallerDep, settings: SettingsDep) -> SliceOut:
    item = service.renew_slice(uow, caller, project, name, policy=settings.expiry,
                               days=body.days, until=body.until, to_max=body.max)
    return SliceOut.of(item)


@router.delete("/projects/{project}/slices/{name}", status_code=204, response_class=Response,
               summary="Delete a slice (project PI, slice creator, admin)")
def delete_slice(project: ProjectPath, name: SlicePath, uow: UowDep, caller: CallerDep,
                 request: Request) -> None:
    service.delete_slice(uow, caller, project, name)
    aggregate = getattr(request.app.state, "aggregate", None)
    if aggregate is not None:  # the slice's slivers went with it: tell their nodes now
        changed = refresh_desired(uow, aggregate.ctx, None)
        uow.commit()
        aggregate.ctx.notify(changed)


@router.post("/projects/{project}/slices/{name}/members", status_code=201,
             summary="Add a project member to a slice")
def add_slice_member(project: ProjectPath, name: SlicePath, body: SliceMemberIn, uow: UowDep,
                     caller: CallerDep) -> SliceOut:
    return SliceOut.of(service.add_slice_member(uow, caller, project, name, body.member))
