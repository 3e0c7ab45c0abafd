"""Describe a slice's topology in Python and submit it: mixed into
:class:`~slicelab.sdk.slices.SliceHandle`::

    s = client.slice("wireless/mesh1")
    s.add_node("n1", image="minimal", cores=1, memory_mib=256)
    s.add_node("n2")
    s.add_link("l1", ["n1", "n2"], capacity_mbps=100, addresses=["10.10.1.1/24", None])
    s.submit(wait=True)
    print(s.exec("n1", ["ping", "-c", "1", "10.10.1.2"]).stdout)
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from slicelab.domain.errors import InvalidInput, Unavailable

from .nodes import ExecResult, SliceStatus

if TYPE_CHECKING:
    from .client import Client

__all__ = ["Progress", "TopologyMethods"]

Progress = Callable[[SliceStatus], None]


class TopologyMethods:
    """Building and submitting a topology for the slice this handle names."""

    client: Client
    ref: str

    def _topology(self) -> dict[str, list[dict[str, Any]]]:
        found: dict[str, list[dict[str, Any]]] | None = getattr(self, "_draft", None)
        if found is None:
            found = {"nodes": [], "links": []}
            self._draft = found
        return found

    def add_node(self, name: str, *, image: str = "minimal", cores: float = 1,
                 memory_mib: int = 256, disk_gib: int = 1, site: str | None = None,
                 component_id: str | None = None, exclusive: bool = False) -> None:
        """Add a sliver ``name`` to the topology being built (sent by :meth:`submit`)."""
        nodes = self._topology()["nodes"]
        if any(n["name"] == name for n in nodes):
            raise InvalidInput(f"node {name!r} is in the topology already", field="name")
        node: dict[str, Any] = {"name": name, "image": image, "cores": cores,
                                "memory": memory_mib, "disk": disk_gib, "exclusive": exclusive}
        if site is not None:
            node["site"] = site
        if component_id is not None:
            node["component_id"] = component_id
        nodes.append(node)

    def add_link(self, name: str, nodes: Sequence[str], *, capacity_mbps: int | None = None,
                 addresses: Sequence[str | None] | None = None) -> None:
        """Join ``nodes`` by link ``name``; ``addresses`` (one per node, or None) if wanted."""
        known = {n["name"] for n in self._topology()["nodes"]}
        missing = [n for n in nodes if n not in known]
        if missing:
            raise InvalidInput(f"link {name!r}: add node(s) {', '.join(missing)} first",
                               field="nodes")
        if addresses is not None and len(addresses) != len(nodes):
            raise InvalidInput(f"link {name!r}: one address (or None) per node",
                               field="addresses")
        given = addresses if addresses is not None else [None] * len(nodes)
        members = [f"{n}:{a}" if a else n for n, a in zip(nodes, given, strict=True)]
        link: dict[str, Any] = {"name": name, "members": members}
        if capacity_mbps is not None:
            link["capacity"] = capacity_mbps
        self._topology()["links"].append(link)

    def topology(self) -> dict[str, Any]:
        """The topology as it will be sent."""
        draft = self._topology()
        return {"nodes": list(draft["nodes"]), "links": list(draft["links"])}

    def submit(self, *, wait: bool = True, timeout: float = 300, interval: float = 1.0,
               on_progress: Progress | None = None) -> SliceStatus:
        """Apply the topology; with ``wait``, poll until every sliver is ready or failed."""
        status = self.client.apply_topology(self.ref, self.topology())
        if on_progress:
            on_progress(status)
        return self.wait(timeout=timeout, interval=interval, on_progress=on_progress) \
            if wait else status

    def wait(self, *, timeout: float = 300, interval: float = 1.0,
             on_progress: Progress | None = None) -> SliceStatus:
        deadline = time.monotonic() + timeout
        while True:
            status = self.client.slice_status(self.ref)
            if on_progress:
                on_progress(status)
            if status.settled:
                return status
            if time.monotonic() >= deadline:
                raise Unavailable(f"slice {self.ref} not ready after {timeout:g} s")
            time.sleep(interval)

    def status(self) -> SliceStatus:
        return self.client.slice_status(self.ref)

    def exec(self, node: str, argv: Sequence[str], *, timeout: float = 30) -> ExecResult:
        return self.client.exec(self.ref, node, list(argv), timeout=timeout)

    def release(self) -> None:
        """Remove every sliver and link of the slice (the slice itself stays)."""
        self.client.release_topology(self.ref)
