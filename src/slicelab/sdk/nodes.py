"""The aggregate's part of the SDK: sites, nodes, images, topologies, status and exec.

:class:`AggregateMethods` is mixed into :class:`~slicelab.sdk.client.Client`::

    with Client(url, token) as sl:
        sl.create_site("lab")
        token = sl.enroll_node("lab", name="host1").token
        sl.apply_topology("p/s", {"nodes": [{"name": "n1"}]})
        print(sl.slice_status("p/s").slivers[0].ssh_command)
        print(sl.exec("p/s", "n1", ["uname", "-a"]).stdout)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from slicelab.domain.errors import NotFound, SlicelabError
from slicelab.domain.names import split_slice_ref

from .connection import Connection, parse

__all__ = [
    "AggregateMethods",
    "Enrollment",
    "ExecResult",
    "Image",
    "Node",
    "NodeResources",
    "ResourcesView",
    "Site",
    "SiteResources",
    "Sizes",
    "SliceStatus",
    "SliverStatus",
]


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Site(_Model):
    name: str
    urn: str
    created: datetime | None = None


class Enrollment(_Model):
    """A one-time token to enroll a node; give it to the node's agent before ``expires``."""

    token: str
    expires: datetime
    site: str
    name: str | None = None


class Node(_Model):
    id: str
    name: str
    site: str
    urn: str
    boot_state: str
    host_ip: str | None = None
    last_seen: datetime | None = None
    auth_failures: int = 0
    inventory: dict[str, Any] = {}


class Image(_Model):
    name: str
    files: int = 0
    bytes: int = 0


class SliverStatus(_Model):
    client_id: str
    sliver_id: str
    urn: str = ""
    node: str
    hostname: str = ""
    allocation_state: str = ""
    operational_state: str = ""
    state: str | None = None
    error: str | None = None
    addresses: tuple[str, ...] = ()
    ssh: dict[str, Any] | None = None
    ssh_command: str | None = None
    expires: datetime | None = None

    @property
    def settled(self) -> bool:
        """Ready or failed: nothing more will happen without a new request."""
        return self.state in ("ready", "failed")


class SliceStatus(_Model):
    project: str
    slice: str
    slivers: tuple[SliverStatus, ...] = ()

    @property
    def settled(self) -> bool:
        return all(s.settled for s in self.slivers)

    @property
    def failed(self) -> tuple[SliverStatus, ...]:
        return tuple(s for s in self.slivers if s.state == "failed")

    def sliver(self, client_id: str) -> SliverStatus:
        for item in self.slivers:
            if item.client_id == client_id:
                return item
        raise NotFound(f"slice {self.project}/{self.slice} has no node {client_id!r}",
                       field="node")


class Sizes(_Model):
    cores: float
    memory_mib: int
    disk_gib: int
    devices: dict[str, int] = {}


class NodeResources(_Model):
    """One node in :meth:`AggregateMethods.resources`: capacity, and what is free over the
    window (nothing when the node is not available)."""

    name: str
    id: str
    urn: str
    boot_state: str
    health: str
    last_seen: datetime | None = None
    available: bool
    capacity: Sizes
    free: Sizes
    uplink_mbps: int | None = None


class SiteResources(_Model):
    name: str
    node_count: int
    up: int
    capacity: Sizes
    free: Sizes
    nodes: tuple[NodeResources, ...] = ()


class ResourcesView(_Model):
    """What is free per site and node over ``[start, end)``."""

    start: datetime
    end: datetime
    sites: tuple[SiteResources, ...] = ()


class ExecResult(_Model):
    exit_code: int
    stdout: str = ""
    stderr: str = ""


def _seg(value: str) -> str:
    return quote(value, safe="")


def _slice_path(ref: str) -> str:
    project, name = split_slice_ref(ref)
    return f"/projects/{_seg(project)}/slices/{_seg(name)}"


class AggregateMethods:
    """Methods of :class:`~slicelab.sdk.client.Client` for the aggregate's API."""

    _conn: Connection

    # -- sites and nodes ------------------------------------------------------------------

    def create_site(self, name: str) -> Site:
        return self._conn.post(Site, "/sites", json={"name": name})

    def sites(self) -> list[Site]:
        return [parse(Site, s) for s in self._conn.call("GET", "/sites")]

    def enroll_node(self, site: str, *, name: str | None = None) -> Enrollment:
        """A one-time enrollment token for a node of ``site`` (operators)."""
        body = {"name": name} if name else {}
        return self._conn.post(Enrollment, f"/sites/{_seg(site)}/enrollments", json=body)

    def nodes(self) -> list[Node]:
        return [parse(Node, n) for n in self._conn.call("GET", "/nodes")]

    def node(self, name: str) -> Node:
        return self._conn.get(Node, f"/nodes/{_seg(name)}")

    def set_node_state(self, name: str, state: str) -> Node:
        return self._conn.post(Node, f"/nodes/{_seg(name)}/state", json={"state": state})

    def resources(self, *, start: datetime | None = None, until: datetime | None = None,
                  site: str | None = None) -> ResourcesView:
        """What every node has and what is free now (or over ``[start, until)``), per site."""
        params = {"from": start.isoformat() if start else None,
                  "until": until.isoformat() if until else None, "site": site}
        return self._conn.get(ResourcesView, "/resources", params=params)

    def advertisement(self) -> dict[str, Any]:
        """The advertisement as JSON (``generated``, ``aggregate_urn``, ``nodes``, ``links``);
        :func:`slicelab.services.inventory.advertisement_from_json` reads it."""
        body = self._conn.call("GET", "/advertisement")
        if not isinstance(body, dict) or "nodes" not in body:
            raise SlicelabError("unexpected advertisement from the server (no 'nodes')")
        return body

    # -- images ---------------------------------------------------------------------------

    def images(self) -> list[Image]:
        return [parse(Image, i) for i in self._conn.call("GET", "/images")]

    def build_image(self, name: str) -> Image:
        return self._conn.post(Image, f"/images/{_seg(name)}/build")

    # -- slices: topology, status, exec ---------------------------------------------------

    def apply_topology(self, ref: str, topology: dict[str, Any]) -> SliceStatus:
        """Make slice ``project/name`` hold exactly ``topology`` (allocate, provision, start)."""
        body = self._conn.call("PUT", f"{_slice_path(ref)}/topology", json=topology)
        return parse(SliceStatus, body)

    def release_topology(self, ref: str) -> None:
        """Remove every sliver and link of the slice."""
        self._conn.delete(f"{_slice_path(ref)}/topology")

    def slice_status(self, ref: str) -> SliceStatus:
        return self._conn.get(SliceStatus, f"{_slice_path(ref)}/status")

    def exec(self, ref: str, node: str, argv: list[str], *, timeout: float = 30) -> ExecResult:
        """Run ``argv`` in sliver ``node`` of the slice; its exit code and output."""
        body = {"argv": list(argv), "timeout": timeout}
        return self._conn.post(ExecResult, f"{_slice_path(ref)}/slivers/{_seg(node)}/exec",
                               json=body)
