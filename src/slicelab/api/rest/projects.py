"""Projects: create, list, read, invite, join, approve requests."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Response

from slicelab.domain.projects import JoinOutcome, Project
from slicelab.domain.roles import Caller
from slicelab.services import projects as service

from ..deps import CallerDep, PagingDep, UowDep
from .models import (
    InvitationIn,
    InvitationOut,
    JoinOut,
    MemberName,
    PageOut,
    ProjectIn,
    ProjectName,
    ProjectOut,
    page_of,
)

__all__ = ["router"]

router = APIRouter(tags=["projects"])
ProjectPath = Annotated[ProjectName, Path()]
MemberPath = Annotated[MemberName, Path()]


def _out(project: Project, caller: Caller) -> ProjectOut:
    me = caller.member
    privileged = me is not None and (me.is_admin or project.is_pi(me.name))
    return ProjectOut.of(project, privileged=privileged)


@router.post("/projects", status_code=201, summary="Create a project (admin, can_lead)")
def create_project(body: ProjectIn, uow: UowDep, caller: CallerDep) -> ProjectOut:
    project = service.create_project(uow, caller, name=body.name, description=body.description)
    return _out(project, caller)


@router.get("/projects", summary="Projects: all for admins and operators, else the caller's")
def list_projects(uow: UowDep, caller: CallerDep, paging: PagingDep) -> PageOut[ProjectOut]:
    page = service.list_projects(uow, caller, limit=paging.limit, offset=paging.offset)
    return page_of(page, [_out(p, caller) for p in page.items])


@router.get("/projects/{name}", summary="Read a project (its members, admin)")
def get_project(name: ProjectPath, uow: UowDep, caller: CallerDep) -> ProjectOut:
    return _out(service.get_project(uow, caller, name), caller)


@router.post("/projects/{name}/invitations", status_code=201, summary="Invite a member (PI)")
def invite(name: ProjectPath, body: InvitationIn, uow: UowDep,
           caller: CallerDep) -> InvitationOut:
    service.invite(uow, caller, name, body.member)
    return InvitationOut(project=name, member=body.member, status="invited")


@router.post("/projects/{name}/join", summary="Join (if invited: 200) or ask to join (202)",
             responses={202: {"model": JoinOut, "description": "A join request was filed"}})
def join(name: ProjectPath, uow: UowDep, caller: CallerDep, response: Response) -> JoinOut:
    outcome = service.join(uow, caller, name)
    response.status_code = 200 if outcome is JoinOutcome.JOINED else 202
    return JoinOut(status=outcome.value)


@router.post("/projects/{name}/requests/{member}/approve",
             summary="Approve a member's request to join (PI)")
def approve(name: ProjectPath, member: MemberPath, uow: UowDep,
            caller: CallerDep) -> ProjectOut:
    return _out(service.approve_request(uow, caller, name, member), caller)
