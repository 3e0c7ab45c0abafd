"""JSON text for the database: the stored form of JSON columns and bulk parameters.

orjson (not the standard library's ``json``): the allocation engine's batch writes every
sliver's request and plan and every booking as JSON text, and the standard encoder took half
of the batch writer's time (about 10 µs per sliver row, orjson under 1 µs). The text is
compact (no spaces), keys in insertion order, as ``json.dumps`` with compact separators
would write it; a value JSON cannot hold (a set, a key not a string, an integer beyond 64
bits) is refused with :class:`TypeError` rather than written in a form only Python reads back,
and a float NaN or infinity is written as ``null`` (JSON has neither; PostgreSQL refuses the
``NaN`` the standard encoder writes).
"""

from __future__ import annotations

from typing import Any

import orjson

__all__ = ["dumps"]


def dumps(value: Any) -> str:
    """``value`` (dicts with string keys, lists, tuples, strings, numbers, bools, None) as
    compact JSON text."""
    try:
        return orjson.dumps(value).decode()
    except orjson.JSONEncodeError as exc:
        raise TypeError(f"not storable as JSON: {exc}") from None

