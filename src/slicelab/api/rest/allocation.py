"""Allocation and the GENI sliver lifecycle over REST, and the earliest free slot.

``POST .../allocate`` takes a JSON topology (``{"topology": ..., "start", "end",
"duration"}``) or a request RSpec (``Content-Type: application/xml``, with ``start``,
``end`` and ``duration`` as query parameters). A request that cannot be placed answers 409
with the diagnosis in ``detail`` and, structured, in the extension member ``diagnosis`` (as
every refusal of placement does, see :mod:`slicelab.api.problems`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from slicelab.domain.errors import InvalidInput
from slicelab.services import allocation as alloc
from slicelab.services import lifecycle
from slicelab.services.leases import LeaseWindow, parse_duration
from slicelab.services.topology_apply import slice_status
from slicelab.store.leases import LeaseRow

from ..agent.models import SliceStatusOut, SliverOut
from ..agent.state import AggregateState, aggregate_state
from ..deps import CallerDep, ReadCallerDep, ReadUowDep, UowDep
from .models import ProjectName, SliceName

__all__ = ["AllocateIn", "AllocatedOut", "LeaseOut", "SlotIn", "SlotOut", "router"]

router = APIRouter(tags=["allocation"])
StateDep = Annotated[AggregateState, Depends(aggregate_state)]
ProjectPath = Annotated[ProjectName, Path()]
SlicePath = Annotated[SliceName, Path()]
Span = Annotated[str, Field(max_length=32, examples=["2h", "90m", "1d"])]
XML_TYPES = ("application/xml", "text/xml", "application/rspec+xml")


class LeaseOut(BaseModel):
    id: str
    slice: str
    start: datetime
    end: datetime
    state: str
    provision: bool

    @classmethod
    def of(cls, lease: LeaseRow) -> LeaseOut:
        return cls(id=lease.id, slice=f"{lease.project}/{lease.slice}", start=lease.window.start,
                   end=lease.window.end, state=lease.state, provision=lease.provision)


class AllocateIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topology: dict[str, Any]
    start: datetime | None = None
    end: datetime | None = None
    duration: Span | None = None


class AllocatedOut(BaseModel):
    lease: LeaseOut
    status: SliceStatusOut
    manifest: str | None = None


class SlotIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    topology: dict[str, Any]
    duration: Span
    after: datetime | None = None


class SlotOut(BaseModel):
    start: datetime
    end: datetime
    hosts: dict[str, str]


M = TypeVar("M", bound=BaseModel)


def _model(model: type[M], data: Any) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise InvalidInput(f"body.{where}: {first['msg']}", field=f"body.{where}") from None


def _window(start: datetime | None, end: datetime | None, duration: str | None) -> LeaseWindow:
    span = parse_duration(duration) if duration else None
    return LeaseWindow(start=start, end=end, duration=span)


async def _request(request: Request) -> tuple[Any, bool]:
    """The request body: RSpec bytes (by Content-Type) or the parsed JSON."""
    body = await request.body()
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind in XML_TYPES:
        return body, True
    try:
        return json.loads(body or b"null"), False
    except ValueError:
        raise InvalidInput("the body must be JSON, or an RSpec sent as application/xml",
                           field="body") from None


def _status(uow: UowDep, caller: CallerDep, project: str, name: str) -> SliceStatusOut:
    slivers = slice_status(uow, caller, project, name)
    return SliceStatusOut(project=project, slice=name, slivers=[SliverOut.of(s) for s in slivers])


@router.post("/projects/{project}/slices/{name}/allocate", response_model=AllocatedOut,
             summary="Allocate a topology or request RSpec for a lease (GENI Allocate)",
             responses={409: {"description": "Does not fit; the diagnosis says why"}})
async def allocate(project: ProjectPath, name: SlicePath, request: Request, uow: ReadUowDep,
                   caller: ReadCallerDep, state: StateDep,
                   start: Annotated[datetime | None, Query()] = None,
                   end: Annotated[datetime | None, Query()] = None,
                   duration: Annotated[str | None, Query(max_length=32)] = None) -> Any:
    data, is_rspec = await _request(request)
    if not is_rspec:
        body = _model(AllocateIn, data)
        data, start, end, duration = body.topology, body.start, body.end, body.duration
    when = _window(start, end, duration)
    offer = alloc.aggregate_offer(state.ctx, [i.name for i in state.images.list()])
    # the allocation engine batches concurrent requests: wait for it off the event loop
    done = await run_in_threadpool(alloc.allocate, uow, state.ctx, caller, project, name, data,
                                   when=when, offer=offer)
    manifest = done.manifest.decode() if done.manifest else None
    status = await run_in_threadpool(_status, uow, caller, project, name)
    return AllocatedOut(lease=LeaseOut.of(done.lease), manifest=manifest, status=status)


@router.post("/projects/{project}/slices/{name}/provision", response_model=SliceStatusOut,
             summary="Provision the allocated slivers (at the lease's start if later)")
def provision(project: ProjectPath, name: SlicePath, uow: UowDep, caller: CallerDep,
              state: StateDep) -> SliceStatusOut:
    lifecycle.provision(uow, state.ctx, caller, project, name)
    return _status(uow, caller, project, name)


def _operate(action: lifecycle.Action) -> Callable[..., SliceStatusOut]:
    def handler(project: ProjectPath, name: SlicePath, uow: UowDep, caller: CallerDep,
                state: StateDep) -> SliceStatusOut:
        lifecycle.operate(uow, state.ctx, caller, project, name, action)
        return _status(uow, caller, project, name)
    return handler


for _action in lifecycle.Action:
    router.add_api_route(f"/projects/{{project}}/slices/{{name}}/{_action.value}",
                         _operate(_action), methods=["POST"], response_model=SliceStatusOut,
                         summary=f"{_action.value.capitalize()} the slice's slivers")


@router.delete("/projects/{project}/slices/{name}/slivers", status_code=204,
               response_class=Response, summary="Delete every sliver of the slice")
def delete_slivers(project: ProjectPath, name: SlicePath, uow: UowDep, caller: CallerDep,
                   state: StateDep) -> None:
    lifecycle.delete_slivers(uow, state.ctx, caller, project, name)


@router.post("/resources/find-slot", response_model=SlotOut,
             summary="The earliest window where a topology fits for a duration",
             responses={409: {"description": "No window within the horizon"}})
async def find_slot(request: Request, uow: UowDep, caller: CallerDep, state: StateDep,
                    duration: Annotated[str | None, Query(max_length=32)] = None,
                    after: Annotated[datetime | None, Query()] = None) -> SlotOut:
    data, is_rspec = await _request(request)
    if not is_rspec:
        body = _model(SlotIn, data)
        data, duration, after = body.topology, body.duration, body.after
    if not duration:
        raise InvalidInput("give the duration of the slot wanted (e.g. 3h)", field="duration")
    offer = alloc.aggregate_offer(state.ctx, [i.name for i in state.images.list()])
    slot = alloc.earliest_slot(uow, caller, data, duration=parse_duration(duration),
                               after=after, offer=offer)
    return SlotOut(start=slot.window.start, end=slot.window.end, hosts=dict(slot.hosts))
