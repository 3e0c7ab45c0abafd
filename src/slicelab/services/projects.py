"""Projects: create, list, read, invite, join, approve."""

from __future__ import annotations

from slicelab.domain.errors import Conflict
from slicelab.domain.projects import JoinOutcome, Project, ProjectRole
from slicelab.domain.roles import Caller, Operation, Role, Scope, Target, authorize, roles_of
from slicelab.store.base import Page
from slicelab.store.uow import UnitOfWork

from .audit import me, record, utcnow

__all__ = [
    "approve_request",
    "create_project",
    "get_project",
    "invite",
    "join",
    "list_projects",
    "sees_everything",
]


def sees_everything(caller: Caller) -> bool:
    """Admins and operators see every project and slice in lists."""
    return bool({Role.ADMIN, Role.OPERATOR} & roles_of(caller, Scope.PLATFORM))


def create_project(uow: UnitOfWork, caller: Caller, *, name: str,
                   description: str = "") -> Project:
    authorize(Operation.PROJECT_CREATE, caller)
    project = Project(name=name, description=description, created=utcnow())
    if uow.projects.find(name) is not None:
        raise Conflict(f"project {name!r} exists already", field="name")
    project.add(me(caller).name, ProjectRole.PI)
    uow.projects.add(project)
    record(uow, caller, Operation.PROJECT_CREATE, f"project {name}")
    uow.commit()
    return project


def list_projects(uow: UnitOfWork, caller: Caller, *, limit: int,
                  offset: int) -> Page[Project]:
    authorize(Operation.PROJECT_LIST, caller)
    member = None if sees_everything(caller) else me(caller).name
    return uow.projects.list(member=member, limit=limit, offset=offset)


def get_project(uow: UnitOfWork, caller: Caller, name: str) -> Project:
    project = uow.projects.get(name)
    authorize(Operation.PROJECT_READ, caller, Target(project=project))
    return project


def invite(uow: UnitOfWork, caller: Caller, project_name: str, member: str) -> Project:
    project = uow.projects.get(project_name)
    authorize(Operation.PROJECT_INVITE, caller, Target(project=project))
    uow.members.get(member, field="member")
    project.invite(member)
    uow.projects.save(project)
    record(uow, caller, Operation.PROJECT_INVITE, f"project {project_name}", f"member={member}")
    uow.commit()
    return project


def join(uow: UnitOfWork, caller: Caller, project_name: str) -> JoinOutcome:
    authorize(Operation.PROJECT_JOIN, caller)
    project = uow.projects.get(project_name)
    outcome = project.join(me(caller).name)
    uow.projects.save(project)
    record(uow, caller, Operation.PROJECT_JOIN, f"project {project_name}", outcome.value)
    uow.commit()
    return outcome


def approve_request(uow: UnitOfWork, caller: Caller, project_name: str, member: str) -> Project:
    project = uow.projects.get(project_name)
    authorize(Operation.PROJECT_APPROVE, caller, Target(project=project))
    project.approve(member)
    uow.projects.save(project)
    record(uow, caller, Operation.PROJECT_APPROVE, f"project {project_name}", f"member={member}")
    uow.commit()
    return project
