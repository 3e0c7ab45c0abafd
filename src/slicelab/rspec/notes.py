"""Notes: warnings for the user that do not stop a request ("latency not enforced here")."""

from __future__ import annotations

__all__ = ["Notes"]


class Notes:
    """An ordered set of short messages; adding the same note twice keeps one."""

    def __init__(self) -> None:
        self._items: dict[str, None] = {}

    def add(self, message: str) -> None:
        self._items.setdefault(message, None)

    def items(self) -> tuple[str, ...]:
        return tuple(self._items)

    def __len__(self) -> int:
        return len(self._items)
