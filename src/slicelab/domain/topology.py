"""A requested topology: nodes, their interfaces, and links or LANs joining them.

This is data, realized later by the aggregate (placement) and the agents (slivers and links).
It is what both the topology file (YAML/JSON) and a GENI request RSpec become. Names are the
requester's ``client_id``s, unique across the whole request.
"""

from __future__ import annotations

import ipaddress
from collections import Counter
from dataclasses import dataclass, field

from .errors import InvalidTopology
from .resources import Resources

__all__ = [
    "Execute",
    "Install",
    "InterfaceRequest",
    "LinkRequest",
    "NodeRequest",
    "Topology",
]


@dataclass(frozen=True, slots=True)
class Install:
    """Put an archive or file (``url``: a registered file name, or a URL) at ``path``."""

    url: str
    path: str


@dataclass(frozen=True, slots=True)
class Execute:
    """Run ``command`` with ``shell`` inside the sliver once it is ready."""

    command: str
    shell: str = "sh"


@dataclass(frozen=True, slots=True)
class NodeRequest:
    client_id: str
    resources: Resources = field(default_factory=Resources)
    image: str | None = None
    sliver_type: str = "container"
    exclusive: bool = False
    component_id: str | None = None
    component_manager_id: str | None = None
    hardware_type: str | None = None
    site: str | None = None
    installs: tuple[Install, ...] = ()
    executes: tuple[Execute, ...] = ()


@dataclass(frozen=True, slots=True)
class InterfaceRequest:
    client_id: str
    node: str
    ipv4: str | None = None  # "10.10.1.1/24"
    mac: str | None = None

    def address(self) -> ipaddress.IPv4Interface | None:
        return ipaddress.IPv4Interface(self.ipv4) if self.ipv4 else None


@dataclass(frozen=True, slots=True)
class LinkRequest:
    client_id: str
    interfaces: tuple[str, ...]
    capacity_mbps: int | None = None
    latency_ms: float | None = None
    packet_loss: float | None = None

    @property
    def is_lan(self) -> bool:
        return len(self.interfaces) > 2


@dataclass(frozen=True, slots=True)
class Topology:
    nodes: tuple[NodeRequest, ...] = ()
    interfaces: tuple[InterfaceRequest, ...] = ()
    links: tuple[LinkRequest, ...] = ()

    def __post_init__(self) -> None:
        self._check_unique_ids()
        self._check_interfaces()
        for link in self.links:
            self._check_link(link)

    def node(self, client_id: str) -> NodeRequest:
        for node in self.nodes:
            if node.client_id == client_id:
                return node
        raise InvalidTopology(f"no node {client_id!r} in the topology", field="nodes")

    def interface(self, client_id: str) -> InterfaceRequest:
        for iface in self.interfaces:
            if iface.client_id == client_id:
                return iface
        raise InvalidTopology(f"no interface {client_id!r} in the topology", field="interfaces")

    def link_nodes(self, link: LinkRequest) -> tuple[str, ...]:
        """The node client_ids a link joins, in interface order."""
        return tuple(self.interface(i).node for i in link.interfaces)

    def total_resources(self) -> Resources:
        total = Resources()
        for node in self.nodes:
            total = total + node.resources
        return total

    def _check_unique_ids(self) -> None:
        ids = [n.client_id for n in self.nodes] + [i.client_id for i in self.interfaces]
        ids += [lk.client_id for lk in self.links]
        for cid in ids:
            if not cid or not isinstance(cid, str):
                raise InvalidTopology("every node, interface and link needs a client_id")
        dupes = sorted(c for c, n in Counter(ids).items() if n > 1)
        if dupes:
            raise InvalidTopology(f"duplicate client_id: {', '.join(dupes)}", field="client_id")

    def _check_interfaces(self) -> None:
        nodes = {n.client_id for n in self.nodes}
        for iface in self.interfaces:
            if iface.node not in nodes:
                raise InvalidTopology(
                    f"interface {iface.client_id!r} belongs to unknown node {iface.node!r}",
                    field="interfaces")
            _check_address(iface)
        for node in self.nodes:
            node.resources.require_non_negative()

    def _check_link(self, link: LinkRequest) -> None:
        known = {i.client_id for i in self.interfaces}
        for ref in link.interfaces:
            if ref not in known:
                raise InvalidTopology(
                    f"link {link.client_id!r} refers to unknown interface {ref!r}", field="links")
        if len(set(link.interfaces)) < 2:
            raise InvalidTopology(f"link {link.client_id!r} needs at least two interfaces",
                                  field="links")
        used = [i for lk in self.links for i in lk.interfaces]
        for ref in link.interfaces:
            if used.count(ref) > 1:
                raise InvalidTopology(f"interface {ref!r} is on more than one link", field="links")
        if link.capacity_mbps is not None and link.capacity_mbps <= 0:
            raise InvalidTopology(f"link {link.client_id!r} capacity must be positive",
                                  field="links")


def _check_address(iface: InterfaceRequest) -> None:
    if iface.ipv4 is None:
        return
    try:
        ipaddress.IPv4Interface(iface.ipv4)
    except ValueError as exc:
        raise InvalidTopology(
            f"interface {iface.client_id!r} address {iface.ipv4!r} "
            f"is not an IPv4 address/prefix: {exc}",
            field="interfaces") from None
