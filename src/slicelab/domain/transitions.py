"""One move of a state machine kept as a table ``(state, event) -> next state``."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

from .errors import IllegalTransition

__all__ = ["move"]

S = TypeVar("S", bound=StrEnum)
E = TypeVar("E", bound=StrEnum)


def move(table: Mapping[tuple[S, E], S], state: S, event: E, *, what: str, field: str) -> S:
    """The state ``event`` takes ``state`` to; :class:`IllegalTransition` if the table has none.

    ``what`` names the machine for the message: ``cannot stop <what> <state>``.
    """
    try:
        return table[(state, event)]
    except KeyError:
        raise IllegalTransition(f"cannot {event.value} {what} {state.value}", field=field) from None
