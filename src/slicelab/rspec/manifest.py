"""GENI v3 manifest RSpec: the request topology plus what the aggregate allocated.

The aggregate passes an :class:`Allocation` (sliver URNs, hosts, logins, addresses, MACs,
VNIs); the manifest keeps the request's ``client_id``s. Notes (for example "latency not
enforced") travel as ``<slicelab:note>`` elements, which GENI tools ignore.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from itertools import permutations

from slicelab.domain.topology import InterfaceRequest, LinkRequest, NodeRequest, Topology

from .document import Element
from .namespaces import EMULAB, MANIFEST_SCHEMA_URL, SLICELAB
from .request import format_cores
from .writer import child, new_rspec, serialize

__all__ = [
    "Allocation",
    "InterfaceAllocation",
    "LinkAllocation",
    "Login",
    "NodeAllocation",
    "build_manifest",
    "enforcement_notes",
]


@dataclass(frozen=True, slots=True)
class Login:
    username: str
    hostname: str
    port: int = 22


@dataclass(frozen=True, slots=True)
class InterfaceAllocation:
    client_id: str
    sliver_id: str
    mac: str
    ipv4: str | None = None  # "10.10.1.1/24"; overrides the request's (e.g. from the pool)
    component_id: str | None = None


@dataclass(frozen=True, slots=True)
class NodeAllocation:
    client_id: str
    sliver_id: str
    component_id: str
    hostname: str  # <node>.<slice>.<project>.<domain>
    logins: tuple[Login, ...] = ()
    sliver_type: str | None = None  # the name the request used, if not the kind
    interfaces: tuple[InterfaceAllocation, ...] = ()


@dataclass(frozen=True, slots=True)
class LinkAllocation:
    client_id: str
    sliver_id: str
    vni: int | None = None
    vlan: int | None = None


@dataclass(frozen=True, slots=True)
class Allocation:
    aggregate_urn: str
    nodes: tuple[NodeAllocation, ...] = ()
    links: tuple[LinkAllocation, ...] = ()
    expires: datetime | None = None
    notes: tuple[str, ...] = ()


def build_manifest(topology: Topology, allocation: Allocation, *,
                   generated: datetime | None = None) -> bytes:
    """Nodes and links of ``topology``; those not (yet) allocated carry no sliver_id."""
    root = new_rspec("manifest", MANIFEST_SCHEMA_URL, generated=generated,
                     expires=allocation.expires)
    nodes = {n.client_id: n for n in allocation.nodes}
    links = {lk.client_id: lk for lk in allocation.links}
    for node in topology.nodes:
        _node(root, node, topology, nodes.get(node.client_id), allocation.aggregate_urn)
    for link in topology.links:
        _link(root, link, links.get(link.client_id), allocation.aggregate_urn)
    for note in (*allocation.notes, *enforcement_notes(topology)):
        child(root, "note", ns=SLICELAB).text = note
    return serialize(root)


def enforcement_notes(topology: Topology) -> list[str]:
    """What a request asked for that this aggregate does not enforce."""
    notes = []
    for link in topology.links:
        if link.latency_ms:
            notes.append(f"link {link.client_id!r}: latency {link.latency_ms:g} ms not enforced")
        if link.packet_loss:
            notes.append(f"link {link.client_id!r}: packet loss {link.packet_loss:g} "
                         "not enforced")
    return notes


def _node(root: Element, node: NodeRequest, topology: Topology, alloc: NodeAllocation | None,
          aggregate: str) -> None:
    el = child(root, "node", client_id=node.client_id,
               component_id=alloc.component_id if alloc else node.component_id,
               component_manager_id=aggregate, sliver_id=alloc.sliver_id if alloc else None,
               exclusive="true" if node.exclusive else "false")
    stype = child(el, "sliver_type", name=alloc.sliver_type if alloc and alloc.sliver_type
                  else node.sliver_type)
    if node.image:
        child(stype, "disk_image", name=node.image)
    res = node.resources
    child(stype, "xen", ns=EMULAB,
          cores=format_cores(res.cpu_milli), ram=res.memory_mib, disk=res.disk_gib)
    _services(el, node, alloc)
    ifaces = {i.client_id: i for i in alloc.interfaces} if alloc else {}
    for iface in topology.interfaces:
        if iface.node == node.client_id:
            _interface(el, iface, ifaces.get(iface.client_id))
    if alloc is not None:
        child(el, "host", name=alloc.hostname)


def _services(el: Element, node: NodeRequest, alloc: NodeAllocation | None) -> None:
    logins = alloc.logins if alloc else ()
    if not (logins or node.installs or node.executes):
        return
    services = child(el, "services")
    for login in logins:
        child(services, "login", authentication="ssh-keys", hostname=login.hostname,
              port=login.port, username=login.username)
    for inst in node.installs:
        child(services, "install", url=inst.url, install_path=inst.path)
    for ex in node.executes:
        child(services, "execute", shell=ex.shell, command=ex.command)


def _interface(parent: Element, iface: InterfaceRequest,
               alloc: InterfaceAllocation | None) -> None:
    el = child(parent, "interface", client_id=iface.client_id,
               component_id=alloc.component_id if alloc else None,
               sliver_id=alloc.sliver_id if alloc else None,
               mac_address=alloc.mac if alloc else iface.mac)
    address = alloc.ipv4 if alloc and alloc.ipv4 else iface.ipv4
    if address:
        ip, _, prefix = address.partition("/")
        child(el, "ip", address=ip, netmask=_netmask(int(prefix or 32)), type="ipv4")


def _netmask(prefix: int) -> str:
    bits = (0xFFFFFFFF << (32 - prefix)) & 0xFFFFFFFF
    return ".".join(str((bits >> s) & 0xFF) for s in (24, 16, 8, 0))


def _link(root: Element, link: LinkRequest, alloc: LinkAllocation | None,
          aggregate: str) -> None:
    tag = _vlantag(alloc)
    el = child(root, "link", client_id=link.client_id,
               sliver_id=alloc.sliver_id if alloc else None, vlantag=tag)
    child(el, "component_manager", name=aggregate)
    for ref in link.interfaces:
        child(el, "interface_ref", client_id=ref)
    if link.capacity_mbps:
        for src, dst in _pairs(link.interfaces):
            child(el, "property", source_id=src, dest_id=dst,
                  capacity=link.capacity_mbps * 1000)
    child(el, "link_type", name="lan")
    if alloc is not None and alloc.vni is not None:
        child(el, "segment", ns=SLICELAB, kind="vxlan", vni=alloc.vni)


def _vlantag(alloc: LinkAllocation | None) -> str | None:
    if alloc is None:
        return None
    value = alloc.vlan if alloc.vlan is not None else alloc.vni
    return None if value is None else str(value)


def _pairs(ifaces: Iterable[str]) -> Iterable[tuple[str, str]]:
    return permutations(ifaces, 2)
