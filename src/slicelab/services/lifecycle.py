"""The GENI AM API v3 sliver lifecycle after allocation: provision, start, stop, restart,
delete, moved through the state tables of :mod:`slicelab.domain.slivers`.

Provision puts allocated slivers into their nodes' desired state (stopped until started). For
a lease that starts later, provision is recorded and the sweep provisions and starts the
slivers at the lease's start (:mod:`slicelab.services.sweep`). Start, stop and restart map to
the desired document's ``run`` and ``restart_seq``. An illegal move raises
:class:`~slicelab.domain.errors.IllegalTransition` (409) naming the sliver and its states.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime
from enum import StrEnum

from slicelab.domain.errors import IllegalTransition, NotFound
from slicelab.domain.roles import Caller, Operation
from slicelab.domain.slices import Slice
from slicelab.domain.slivers import (
    AllocationEvent,
    AllocationState,
    OperationalEvent,
    OperationalState,
    SliverState,
)
from slicelab.store.aggregate import SliverRow
from slicelab.store.uow import UnitOfWork

from .audit import utcnow
from .provisioning import AggregateContext, refresh_desired
from .topology_apply import release_slice, slice_for

__all__ = ["Action", "delete_slivers", "operate", "provision", "provision_rows", "state_of"]

OP = Operation


class Action(StrEnum):
    START = "start"
    STOP = "stop"
    RESTART = "restart"


_EVENTS = {Action.START: OperationalEvent.START, Action.STOP: OperationalEvent.STOP,
           Action.RESTART: OperationalEvent.RESTART}


def state_of(row: SliverRow) -> SliverState:
    return SliverState(AllocationState(row.allocation_state),
                       OperationalState(row.operational_state))


def _moved(row: SliverRow, move: Callable[[SliverState], SliverState]) -> SliverState:
    try:
        return move(state_of(row))
    except IllegalTransition as exc:
        raise IllegalTransition(f"sliver {row.client_id} ({row.id}): {exc.message}",
                                field=exc.field) from None


def _set(row: SliverRow, state: SliverState, **plan: object) -> SliverRow:
    return replace(row, allocation_state=state.allocation.value,
                   operational_state=state.operational.value, plan={**row.plan, **plan})


def _slivers(uow: UnitOfWork, item: Slice) -> list[SliverRow]:
    assert item.id is not None
    rows = uow.aggregate.slivers.of_slice(item.id)
    if not rows:
        raise NotFound(f"slice {item.project}/{item.name} has no slivers; allocate first",
                       field="slice")
    return rows


def provision_rows(uow: UnitOfWork, rows: list[SliverRow], *, start: bool) -> list[SliverRow]:
    """Move allocated ``rows`` to provisioned (and started when ``start``); not committed."""
    done = []
    for row in rows:
        state = _moved(row, lambda s: s.on(AllocationEvent.PROVISION))
        if start:
            state = state.operate(OperationalEvent.START)
        done.append(_set(row, state, run="started" if start else "stopped"))
        uow.aggregate.slivers.save(done[-1])
    return done


def provision(uow: UnitOfWork, ctx: AggregateContext, caller: Caller, project: str,
              name: str, *, now: datetime | None = None) -> list[SliverRow]:
    """Provision the slice's allocated slivers; those of a lease not yet begun are provisioned
    (and started) by the sweep at its start."""
    now = now or utcnow()
    item = slice_for(uow, caller, OP.SLIVER_OPERATE, project, name)
    rows = _slivers(uow, item)
    for row in rows:
        _moved(row, lambda s: s.on(AllocationEvent.PROVISION))
    leases = uow.leases.leases.sliver_leases([r.id for r in rows])
    due = []
    for lease_id in sorted(set(leases.values())):
        lease = uow.leases.leases.get(lease_id)
        uow.leases.leases.set_provision(lease_id)
        if lease.window.start <= now:
            due += [r for r in rows if leases.get(r.id) == lease_id]
    provision_rows(uow, due, start=False)
    changed = refresh_desired(uow, ctx, {r.node_id for r in due})
    uow.commit()
    ctx.notify(changed)
    assert item.id is not None
    return uow.aggregate.slivers.of_slice(item.id)


def operate(uow: UnitOfWork, ctx: AggregateContext, caller: Caller, project: str, name: str,
            action: Action, *, client_ids: list[str] | None = None) -> list[SliverRow]:
    """Start, stop or restart the slice's slivers (all, or those named)."""
    item = slice_for(uow, caller, OP.SLIVER_OPERATE, project, name)
    rows = _chosen(_slivers(uow, item), client_ids)
    event = _EVENTS[action]
    changed_rows = []
    for row in rows:
        state = _moved(row, lambda s: s.operate(event))
        plan: dict[str, object] = {"run": "stopped" if action is Action.STOP else "started"}
        if action is Action.RESTART:
            plan["restart_seq"] = int(row.plan.get("restart_seq", 0)) + 1
        changed_rows.append(_set(row, state, **plan))
    for row in changed_rows:
        uow.aggregate.slivers.save(row)
    changed = refresh_desired(uow, ctx, {r.node_id for r in rows})
    uow.commit()
    ctx.notify(changed)
    assert item.id is not None
    return uow.aggregate.slivers.of_slice(item.id)


def _chosen(rows: list[SliverRow], client_ids: list[str] | None) -> list[SliverRow]:
    if not client_ids:
        return rows
    known = {r.client_id for r in rows}
    missing = sorted(set(client_ids) - known)
    if missing:
        raise NotFound(f"no sliver {', '.join(missing)} in this slice", field="client_ids")
    return [r for r in rows if r.client_id in client_ids]


def delete_slivers(uow: UnitOfWork, ctx: AggregateContext, caller: Caller, project: str,
                   name: str) -> None:
    """Delete every sliver of the slice: bookings released, nodes tear them down."""
    release_slice(uow, ctx, caller, project, name)
