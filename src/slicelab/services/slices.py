"""Slices: create, list, read, renew, delete, add members."""

from __future__ import annotations

from datetime import datetime

from slicelab.domain.errors import Conflict
from slicelab.domain.policy import ExpiryPolicy
from slicelab.domain.roles import Caller, Operation, Target, authorize
from slicelab.domain.slices import Slice, slice_urn
from slicelab.store.base import Page
from slicelab.store.uow import UnitOfWork

from .audit import me, record, utcnow
from .projects import sees_everything

__all__ = [
    "add_slice_member",
    "create_slice",
    "delete_slice",
    "get_slice",
    "list_slices",
    "renew_slice",
]


def create_slice(uow: UnitOfWork, caller: Caller, project_name: str, *, name: str,
                 authority: str, policy: ExpiryPolicy, expires: datetime | None = None,
                 days: float | None = None) -> Slice:
    project = uow.projects.get(project_name)
    authorize(Operation.SLICE_CREATE, caller, Target(project=project))
    now, creator = utcnow(), me(caller).name
    item = Slice(project=project.name, name=name, urn=slice_urn(authority, project.name, name),
                 created=now, expires=policy.initial(now, expires=expires, days=days),
                 creator=creator, members={creator})
    if uow.slices.find(project.name, name) is not None:
        raise Conflict(f"slice {name!r} exists already in project {project.name!r}",
                       field="name")
    assert project.id is not None
    uow.slices.add(item, project_id=project.id)
    record(uow, caller, Operation.SLICE_CREATE, str(item.urn), f"expires={item.expires}")
    uow.commit()
    return item


def list_slices(uow: UnitOfWork, caller: Caller, *, project: str | None, limit: int,
                offset: int) -> Page[Slice]:
    authorize(Operation.SLICE_LIST, caller)
    if project is not None:
        get_project_for(uow, caller, project)
        return uow.slices.list(projects_in=[project], limit=limit, offset=offset)
    if sees_everything(caller):
        return uow.slices.list(projects_in=None, limit=limit, offset=offset)
    mine = uow.projects.list(member=me(caller).name, limit=100_000, offset=0).items
    return uow.slices.list(projects_in=[p.name for p in mine], limit=limit, offset=offset)


def get_project_for(uow: UnitOfWork, caller: Caller, project_name: str) -> None:
    authorize(Operation.SLICE_READ, caller, Target(project=uow.projects.get(project_name)))


def get_slice(uow: UnitOfWork, caller: Caller, project: str, name: str) -> Slice:
    get_project_for(uow, caller, project)
    return uow.slices.get(project, name)


def renew_slice(uow: UnitOfWork, caller: Caller, project_name: str, name: str, *,
                policy: ExpiryPolicy, days: float | None = None, until: datetime | None = None,
                to_max: bool = False) -> Slice:
    project = uow.projects.get(project_name)
    authorize(Operation.SLICE_RENEW, caller, Target(project=project))
    item = uow.slices.get(project_name, name)
    item.expires = policy.renew(item.expires, utcnow(), days=days, until=until, to_max=to_max)
    uow.slices.save(item)
    record(uow, caller, Operation.SLICE_RENEW, str(item.urn), f"expires={item.expires}")
    uow.commit()
    return item


def delete_slice(uow: UnitOfWork, caller: Caller, project_name: str, name: str) -> None:
    project = uow.projects.get(project_name)
    item = uow.slices.get(project_name, name)
    authorize(Operation.SLICE_DELETE, caller, Target(project=project, creator=item.creator))
    uow.slices.delete(item)
    record(uow, caller, Operation.SLICE_DELETE, str(item.urn))
    uow.commit()


def add_slice_member(uow: UnitOfWork, caller: Caller, project_name: str, name: str,
                     member: str) -> Slice:
    project = uow.projects.get(project_name)
    authorize(Operation.SLICE_ADD_MEMBER, caller, Target(project=project))
    item = uow.slices.get(project_name, name)
    uow.members.get(member, field="member")
    item.add_member(member, project_members=set(project.memberships))
    uow.slices.save(item)
    record(uow, caller, Operation.SLICE_ADD_MEMBER, str(item.urn), f"member={member}")
    uow.commit()
    return item
