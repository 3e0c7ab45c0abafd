"""Sliver states of the GENI AM API v3, as transition tables.

Two independent machines: the *allocation* state (``geni_unallocated`` → ``geni_allocated`` →
``geni_provisioned``) and the *operational* state (``geni_pending_allocation``,
``geni_notready``, ``geni_configuring``, ``geni_ready``, ``geni_stopping``, ``geni_failed``).
A move that is not in the table raises :class:`IllegalTransition`.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from enum import StrEnum

from .errors import IllegalTransition
from .transitions import move

__all__ = [
    "ALLOCATION_TRANSITIONS",
    "OPERATIONAL_TRANSITIONS",
    "AllocationEvent",
    "AllocationState",
    "OperationalEvent",
    "OperationalState",
    "SliverState",
    "next_allocation",
    "next_operational",
]


class AllocationState(StrEnum):
    UNALLOCATED = "geni_unallocated"
    ALLOCATED = "geni_allocated"
    PROVISIONED = "geni_provisioned"


class OperationalState(StrEnum):
    PENDING_ALLOCATION = "geni_pending_allocation"
    NOTREADY = "geni_notready"
    CONFIGURING = "geni_configuring"
    READY = "geni_ready"
    STOPPING = "geni_stopping"
    FAILED = "geni_failed"


class AllocationEvent(StrEnum):
    ALLOCATE = "allocate"
    PROVISION = "provision"
    DELETE = "delete"
    EXPIRE = "expire"


class OperationalEvent(StrEnum):
    PROVISIONED = "provisioned"  # the aggregate handed the sliver to its node
    START = "start"  # the node began (re)configuring it
    READY = "ready"  # the node reports it running
    STOP = "stop"  # a stop was asked for
    STOPPED = "stopped"  # the node reports it stopped
    RESTART = "restart"  # a restart was asked for
    FAIL = "fail"  # the node reports an error


A, OS = AllocationState, OperationalState
AE, OE = AllocationEvent, OperationalEvent

ALLOCATION_TRANSITIONS: dict[tuple[AllocationState, AllocationEvent], AllocationState] = {
    (A.UNALLOCATED, AE.ALLOCATE): A.ALLOCATED,
    (A.ALLOCATED, AE.PROVISION): A.PROVISIONED,
    (A.ALLOCATED, AE.DELETE): A.UNALLOCATED,
    (A.ALLOCATED, AE.EXPIRE): A.UNALLOCATED,
    (A.PROVISIONED, AE.DELETE): A.UNALLOCATED,
    (A.PROVISIONED, AE.EXPIRE): A.UNALLOCATED,
}

OPERATIONAL_TRANSITIONS: dict[tuple[OperationalState, OperationalEvent], OperationalState] = {
    (OS.PENDING_ALLOCATION, OE.PROVISIONED): OS.NOTREADY,
    (OS.NOTREADY, OE.START): OS.CONFIGURING,
    (OS.NOTREADY, OE.FAIL): OS.FAILED,
    (OS.CONFIGURING, OE.READY): OS.READY,
    (OS.CONFIGURING, OE.FAIL): OS.FAILED,
    (OS.CONFIGURING, OE.STOP): OS.STOPPING,
    (OS.READY, OE.STOP): OS.STOPPING,
    (OS.READY, OE.RESTART): OS.CONFIGURING,
    (OS.READY, OE.FAIL): OS.FAILED,
    (OS.STOPPING, OE.STOPPED): OS.NOTREADY,
    (OS.STOPPING, OE.FAIL): OS.FAILED,
    (OS.FAILED, OE.RESTART): OS.CONFIGURING,
    (OS.FAILED, OE.START): OS.CONFIGURING,
    (OS.FAILED, OE.STOP): OS.STOPPING,
}


def next_allocation(state: AllocationState, event: AllocationEvent) -> AllocationState:
    return move(
        ALLOCATION_TRANSITIONS,
        state,
        event,
        what="a sliver in allocation state",
        field="allocation_state",
    )


def next_operational(state: OperationalState, event: OperationalEvent) -> OperationalState:
    return move(
        OPERATIONAL_TRANSITIONS,
        state,
        event,
        what="a sliver in operational state",
        field="operational_state",
    )


@dataclass(frozen=True, slots=True)
class SliverState:
    """Both states of one sliver, moved together where GENI ties them."""

    allocation: AllocationState = AllocationState.UNALLOCATED
    operational: OperationalState = OperationalState.PENDING_ALLOCATION

    def on(self, event: AllocationEvent) -> SliverState:
        allocation = next_allocation(self.allocation, event)
        if event is AllocationEvent.PROVISION:
            operational = next_operational(self.operational, OperationalEvent.PROVISIONED)
            return SliverState(allocation, operational)
        if allocation is AllocationState.UNALLOCATED:
            return SliverState(allocation, OperationalState.PENDING_ALLOCATION)
        return replace(self, allocation=allocation)

    def operate(self, event: OperationalEvent) -> SliverState:
        if self.allocation is not AllocationState.PROVISIONED:
            raise IllegalTransition(
                f"cannot {event.value} a sliver that is {self.allocation.value}; "
                "provision it first",
                field="allocation_state",
            )
        return replace(self, operational=next_operational(self.operational, event))
