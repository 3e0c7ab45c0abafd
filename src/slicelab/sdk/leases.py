"""Leases from Python: allocate (topology or RSpec, now or ahead), provision, start, stop,
restart, delete, renew, list leases, find the earliest slot, quotas and site limits::

    leases = Leases(client)
    done = leases.allocate("p/s", topology={"nodes": [{"name": "n1"}]}, duration="2h")
    leases.provision("p/s")
    leases.renew("p/s", by="1h")
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel

from slicelab.domain.errors import InvalidInput

from .client import Client
from .connection import parse
from .nodes import SliceStatus

__all__ = ["Allocated", "Lease", "LeaseSliver", "Leases", "Renewed", "Slot"]


class Lease(BaseModel):
    id: str
    slice: str
    start: datetime
    end: datetime
    state: str
    provision: bool


class LeaseSliver(BaseModel):
    client_id: str
    sliver_id: str
    node_id: str
    allocation_state: str
    operational_state: str
    expires: datetime


class SliceLease(Lease):
    slivers: list[LeaseSliver]


class Allocated(BaseModel):
    lease: Lease
    status: SliceStatus
    manifest: str | None = None


class Renewed(BaseModel):
    lease_id: str
    start: datetime
    end: datetime
    requested: str


class Slot(BaseModel):
    start: datetime
    end: datetime
    hosts: dict[str, str]


def _slice(ref: str) -> str:
    project, sep, name = ref.partition("/")
    if not sep or not project or not name:
        raise InvalidInput(f"a slice is named PROJECT/SLICE, not {ref!r}", field="slice")
    return f"/projects/{quote(project, safe='')}/slices/{quote(name, safe='')}"


def _when(start: datetime | None, end: datetime | None,
          duration: str | None) -> dict[str, str]:
    found = {"start": start.isoformat() if start else None,
             "end": end.isoformat() if end else None, "duration": duration}
    return {k: v for k, v in found.items() if v is not None}


class Leases:
    """Lease and lifecycle calls through ``client``; each method is one request."""

    def __init__(self, client: Client) -> None:
        self._conn = client._conn  # the SDK's connection, shared

    def _xml(self, path: str, rspec: bytes, params: dict[str, str]) -> Any:
        return self._conn.send("POST", path, content=rspec, content_type="application/xml",
                               params=params)

    def allocate(self, ref: str, *, topology: dict[str, Any] | None = None,
                 rspec: bytes | None = None, start: datetime | None = None,
                 end: datetime | None = None, duration: str | None = None) -> Allocated:
        """Allocate a topology (dict) or a request RSpec (XML bytes) for a lease."""
        path, when = f"{_slice(ref)}/allocate", _when(start, end, duration)
        if (topology is None) == (rspec is None):
            raise InvalidInput("give either a topology or an RSpec", field="topology")
        if rspec is not None:
            return parse(Allocated, self._xml(path, rspec, when))
        return parse(Allocated, self._conn.call("POST", path, json={"topology": topology,
                                                                     **when}))

    def provision(self, ref: str) -> SliceStatus:
        return parse(SliceStatus, self._conn.call("POST", f"{_slice(ref)}/provision"))

    def operate(self, ref: str, action: str) -> SliceStatus:
        """``start``, ``stop`` or ``restart`` every sliver of the slice."""
        if action not in ("start", "stop", "restart"):
            raise InvalidInput(f"no such action {action!r}", field="action")
        return parse(SliceStatus, self._conn.call("POST", f"{_slice(ref)}/{action}"))

    def delete(self, ref: str) -> None:
        self._conn.call("DELETE", f"{_slice(ref)}/slivers")

    def leases(self, ref: str) -> list[SliceLease]:
        return [parse(SliceLease, x) for x in self._conn.call("GET", f"{_slice(ref)}/leases")]

    def renew(self, ref: str, *, by: str | None = None, until: datetime | None = None,
              maximum: bool = False, lease_id: str | None = None) -> list[Renewed]:
        body: dict[str, Any] = {"by": by, "until": until.isoformat() if until else None,
                                "max": maximum, "lease_id": lease_id}
        body = {k: v for k, v in body.items() if v not in (None, False)}
        found = self._conn.call("POST", f"{_slice(ref)}/renew-lease", json=body)
        return [parse(Renewed, x) for x in found]

    def find_slot(self, *, duration: str, topology: dict[str, Any] | None = None,
                  rspec: bytes | None = None, after: datetime | None = None) -> Slot:
        """The earliest window of ``duration`` where the request fits."""
        if rspec is not None:
            params = {"duration": duration, **({"after": after.isoformat()} if after else {})}
            return parse(Slot, self._xml("/resources/find-slot", rspec, params))
        body = {"topology": topology, "duration": duration,
                **({"after": after.isoformat()} if after else {})}
        return parse(Slot, self._conn.call("POST", "/resources/find-slot", json=body))

    def set_quota(self, project: str, **limits: Any) -> dict[str, Any]:
        path = f"/projects/{quote(project, safe='')}/quota"
        return dict(self._conn.call("PUT", path, json=limits))

    def set_site_limits(self, site: str, **limits: Any) -> dict[str, Any]:
        path = f"/sites/{quote(site, safe='')}/limits"
        return dict(self._conn.call("PUT", path, json=limits))
