"""The sliver state tables: every legal move, and every illegal one raises."""

from __future__ import annotations

import itertools

import pytest

from slicelab.domain.errors import IllegalTransition
from slicelab.domain.slivers import (
    ALLOCATION_TRANSITIONS,
    OPERATIONAL_TRANSITIONS,
    AllocationEvent,
    AllocationState,
    OperationalEvent,
    OperationalState,
    SliverState,
    next_allocation,
    next_operational,
)


@pytest.mark.parametrize(("move", "target"), list(ALLOCATION_TRANSITIONS.items()))
def test_every_legal_allocation_move(move: tuple[AllocationState, AllocationEvent],
                                     target: AllocationState) -> None:
    assert next_allocation(*move) is target


@pytest.mark.parametrize(("move", "target"), list(OPERATIONAL_TRANSITIONS.items()))
def test_every_legal_operational_move(move: tuple[OperationalState, OperationalEvent],
                                      target: OperationalState) -> None:
    assert next_operational(*move) is target


ILLEGAL_ALLOCATION = [m for m in itertools.product(AllocationState, AllocationEvent)
                      if m not in ALLOCATION_TRANSITIONS]
ILLEGAL_OPERATIONAL = [m for m in itertools.product(OperationalState, OperationalEvent)
                       if m not in OPERATIONAL_TRANSITIONS]


@pytest.mark.parametrize("move", ILLEGAL_ALLOCATION)
def test_illegal_allocation_moves_raise(move: tuple[AllocationState, AllocationEvent]) -> None:
    with pytest.raises(IllegalTransition, match=move[1].value):
        next_allocation(*move)


@pytest.mark.parametrize("move", ILLEGAL_OPERATIONAL)
def test_illegal_operational_moves_raise(move: tuple[OperationalState, OperationalEvent]) -> None:
    with pytest.raises(IllegalTransition, match=move[1].value):
        next_operational(*move)


def test_tables_leave_some_moves_illegal() -> None:
    assert ILLEGAL_ALLOCATION and ILLEGAL_OPERATIONAL


def test_a_sliver_life() -> None:
    state = SliverState().on(AllocationEvent.ALLOCATE).on(AllocationEvent.PROVISION)
    assert state == SliverState(AllocationState.PROVISIONED, OperationalState.NOTREADY)
    state = state.operate(OperationalEvent.START).operate(OperationalEvent.READY)
    assert state.operational is OperationalState.READY
    assert state.on(AllocationEvent.DELETE) == SliverState()


def test_operating_an_unprovisioned_sliver_raises() -> None:
    with pytest.raises(IllegalTransition, match="provision it first"):
        SliverState().on(AllocationEvent.ALLOCATE).operate(OperationalEvent.START)
