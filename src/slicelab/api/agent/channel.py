"""The node channel, ``/agent/v1``: enrollment, then HMAC-signed long-poll, report, command
results and image downloads. Every signed request is a heartbeat; failures are counted.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from slicelab.domain.errors import InvalidInput
from slicelab.domain.nodes import Node
from slicelab.identity.nodekey import encode_key
from slicelab.services import nodes as node_service
from slicelab.services import provisioning
from slicelab.store.uow import read_only

from .models import CommandResultIn, EnrollIn, EnrollOut
from .state import AggregateState, aggregate_state

__all__ = ["MAX_WAIT", "router"]

router = APIRouter(tags=["node channel"])
StateDep = Annotated[AggregateState, Depends(aggregate_state)]
MAX_WAIT = 60
DEFAULT_WAIT = 25


def _target(request: Request) -> str:
    """The request target as the agent signed it: raw path plus query."""
    raw = request.scope.get("raw_path") or request.url.path.encode()
    path = raw.decode("latin-1")
    query = request.scope.get("query_string", b"").decode("latin-1")
    return f"{path}?{query}" if query else path


async def _body(request: Request) -> bytes:
    try:
        return await request.body()
    except ClientDisconnect:  # the node went away mid-request (it retries): not a server fault
        raise InvalidInput("the request ended before its body arrived", field="body") from None


async def _signed_node(request: Request, state: StateDep) -> Node:
    """The node that signed the request: a steady, known node is checked right here from
    memory; anything else goes to a worker thread (it reads or writes the database)."""
    body = await _body(request)
    headers, target, now = dict(request.headers), _target(request), time.time()
    known = node_service.authenticate_known(
        state.keys,
        state.ctx,
        state.nonces,
        headers=headers,
        method=request.method,
        path=target,
        body=body,
        now=now,
    )
    if known is not None:
        return known
    return await run_in_threadpool(
        node_service.authenticate,
        state.uow_factory,
        state.ctx,
        state.nonces,
        headers=headers,
        method=request.method,
        path=target,
        body=body,
        now=now,
        known=state.keys,
    )


NodeDep = Annotated[Node, Depends(_signed_node)]


@router.post("/enroll", status_code=201, summary="Enroll a node with a one-time token")
def enroll(body: EnrollIn, state: StateDep) -> EnrollOut:
    with state.uow_factory() as uow:
        node, key = node_service.enroll(
            uow, state.ctx, token=body.token, hostname=body.hostname, inventory=body.inventory
        )
    return EnrollOut(
        node_id=node.id, node_name=node.name, node_urn=str(node.urn), node_key=encode_key(key)
    )


def _document(state: AggregateState, node: Node) -> tuple[int, dict[str, Any]]:
    """The node's current document: read only when a rebuild would not change it (the
    usual case), else rebuilt and written."""
    with read_only(state.uow_factory) as reading:
        row = provisioning.current_desired(reading, state.ctx, node)
    if row is None:
        with state.uow_factory() as uow:
            row = provisioning.desired_for(uow, state.ctx, node)
    return row.generation, row.document


@router.get(
    "/desired",
    summary="Long-poll for the node's desired state",
    responses={204: {"description": "No change within `wait` seconds"}},
)
async def desired(
    node: NodeDep,
    state: StateDep,
    after: Annotated[int, Query(ge=0)] = 0,
    wait: Annotated[float, Query(ge=0, le=MAX_WAIT)] = DEFAULT_WAIT,
) -> Response:
    """Answer at once when the document is newer than ``after``, else wait for a change.
    An idle poll soon after a check that found nothing new waits without the database."""
    deadline = time.monotonic() + wait
    while True:
        event = state.notifier.event(node.id)
        if not state.checked.unchanged(node.id, event, after):
            generation, document = await run_in_threadpool(_document, state, node)
            if generation > after:
                return JSONResponse(document)
            state.checked.record(node.id, event, generation)
        if not await state.notifier.wait(event, deadline - time.monotonic()):
            return Response(status_code=204)


def _report(state: AggregateState, node: Node, actual: Any) -> None:
    with state.uow_factory() as uow:
        provisioning.record_report(uow, state.ctx, node, actual)


@router.post(
    "/report", status_code=204, response_class=Response, summary="Report the node's actual state"
)
async def report(request: Request, node: NodeDep, state: StateDep) -> None:
    try:
        actual = await request.json()
    except ValueError:
        raise InvalidInput("the report is not valid JSON", field="body") from None
    await run_in_threadpool(_report, state, node, actual)


def _result(state: AggregateState, node: Node, command_id: str, body: CommandResultIn) -> None:
    with state.uow_factory() as uow:
        provisioning.finish_command(
            uow,
            state.ctx,
            node,
            command_id,
            exit_code=body.exit_code,
            stdout=body.stdout,
            stderr=body.stderr,
        )


@router.post(
    "/commands/{command_id}/result",
    status_code=204,
    response_class=Response,
    summary="The result of a command from the desired state",
)
async def command_result(
    command_id: str, body: CommandResultIn, node: NodeDep, state: StateDep
) -> None:
    await run_in_threadpool(_result, state, node, command_id, body)


@router.get("/images/{name}", summary="An image as a tar stream", response_class=StreamingResponse)
def image(name: str, request: Request, node: NodeDep) -> StreamingResponse:
    stream = request.app.state.image_service.tar_stream(name)  # the chunk store's current
    return StreamingResponse(stream, media_type="application/x-tar")
