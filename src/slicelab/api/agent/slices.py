"""Slice routes of the aggregate: apply a topology, release it, read status, exec."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Path, Response
from starlette.concurrency import run_in_threadpool

from slicelab.domain.errors import Unavailable
from slicelab.domain.roles import Caller
from slicelab.services import topology_apply as service
from slicelab.services.provisioning import abandon_command, command_row
from slicelab.store.aggregate import CommandRow

from ..deps import CallerDep, UowDep
from ..rest.models import ProjectName, SliceName
from .models import ExecIn, ExecOut, SliceStatusOut, SliverOut
from .state import AggregateState, aggregate_state, brief_caller

__all__ = ["CommandTimedOut", "router"]

router = APIRouter(tags=["slivers"])
StateDep = Annotated[AggregateState, Depends(aggregate_state)]
BriefCallerDep = Annotated[Caller, Depends(brief_caller)]
ProjectPath = Annotated[ProjectName, Path()]
SlicePath = Annotated[SliceName, Path()]
EXEC_GRACE = 5.0


class CommandTimedOut(Unavailable):
    """The node did not answer a relayed command in time (504)."""

    status = 504
    title = "Gateway timeout"


@router.put("/projects/{project}/slices/{name}/topology",
            summary="Make the slice hold exactly this topology (allocate, provision, start)")
def apply_topology(project: ProjectPath, name: SlicePath, uow: UowDep, caller: CallerDep,
                   state: StateDep, body: Annotated[dict[str, Any], Body()]) -> SliceStatusOut:
    service.apply_topology(uow, state.ctx, caller, project, name, body)
    return _status(uow, caller, project, name)


@router.delete("/projects/{project}/slices/{name}/topology", status_code=204,
               response_class=Response, summary="Remove every sliver and link of the slice")
def release_topology(project: ProjectPath, name: SlicePath, uow: UowDep, caller: CallerDep,
                     state: StateDep) -> None:
    service.release_slice(uow, state.ctx, caller, project, name)


@router.get("/projects/{project}/slices/{name}/status",
            summary="Each sliver's state, host, addresses, SSH command and error")
def slice_status(project: ProjectPath, name: SlicePath, uow: UowDep,
                 caller: CallerDep) -> SliceStatusOut:
    return _status(uow, caller, project, name)


def _status(uow: Any, caller: Caller, project: str, name: str) -> SliceStatusOut:
    slivers = service.slice_status(uow, caller, project, name)
    return SliceStatusOut(project=project, slice=name, slivers=[SliverOut.of(s) for s in slivers])


@router.post("/projects/{project}/slices/{name}/slivers/{client_id}/exec",
             summary="Run a command in a sliver and return its exit code and output",
             responses={504: {"description": "The node did not answer in time"}})
async def exec_in_sliver(project: ProjectPath, name: SlicePath,
                         client_id: Annotated[str, Path(max_length=63)], body: ExecIn,
                         caller: BriefCallerDep, state: StateDep) -> ExecOut:
    command = await run_in_threadpool(_queue, state, caller, project, name, client_id, body)
    done = await _await_result(state, command.id, deadline=time.monotonic() + body.timeout
                               + EXEC_GRACE)
    if done is None:
        await run_in_threadpool(_abandon, state, command.id)
        raise CommandTimedOut(f"node did not return the result of {command.id} within "
                              f"{body.timeout + EXEC_GRACE:g} s", field="timeout")
    return ExecOut(exit_code=done.exit_code or 0, stdout=done.stdout or "",
                   stderr=done.stderr or "")


def _queue(state: AggregateState, caller: Caller, project: str, name: str, client_id: str,
           body: ExecIn) -> CommandRow:
    with state.uow_factory() as uow:
        return service.queue_exec(uow, state.ctx, caller, project, name, client_id,
                                  argv=body.argv, timeout=body.timeout)


def _read(state: AggregateState, command_id: str) -> CommandRow:
    with state.uow_factory() as uow:
        return command_row(uow, command_id)


def _abandon(state: AggregateState, command_id: str) -> None:
    with state.uow_factory() as uow:
        abandon_command(uow, state.ctx, command_id)


async def _await_result(state: AggregateState, command_id: str, *,
                        deadline: float) -> CommandRow | None:
    try:
        while True:
            event = state.notifier.event(command_id)
            row = await run_in_threadpool(_read, state, command_id)
            if row.finished is not None and row.exit_code is not None:
                return row
            if not await state.notifier.wait(event, deadline - time.monotonic()):
                return None
    finally:
        state.notifier.forget(command_id)
