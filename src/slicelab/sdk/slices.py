"""A handle on one slice, for working with it by name: ``client.slice("project/name")``."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from .models import Slice
from .topology import TopologyMethods

if TYPE_CHECKING:
    from .client import Client

__all__ = ["SliceHandle"]


class SliceHandle(TopologyMethods):
    """Slice ``ref`` (``project/name``) seen through ``client``; each method is one request."""

    def __init__(self, client: Client, ref: str) -> None:
        self.client = client
        self.ref = ref

    def __repr__(self) -> str:
        return f"SliceHandle({self.ref!r})"

    def info(self) -> Slice:
        return self.client.get_slice(self.ref)

    def renew(
        self, *, days: int | None = None, until: datetime | None = None, maximum: bool = False
    ) -> Slice:
        return self.client.renew_slice(self.ref, days=days, until=until, maximum=maximum)

    def delete(self) -> None:
        self.client.delete_slice(self.ref)

    def add_member(self, member: str) -> None:
        self.client.add_slice_member(self.ref, member)
