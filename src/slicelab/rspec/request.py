"""Topology -> GENI v3 request RSpec (for the SDK, for tests, and for other aggregates).

Resources travel in the Emulab ``emulab:xen`` extension (cores, ram in MiB, disk in GiB),
named devices in slicelab's own ``slicelab:device``; capacities in kbps as the schema says.
"""

from __future__ import annotations

from datetime import datetime
from itertools import permutations

from slicelab.domain.resources import Resources
from slicelab.domain.topology import LinkRequest, NodeRequest, Topology

from .document import Element
from .namespaces import EMULAB, REQUEST_SCHEMA_URL, SLICELAB
from .writer import child, new_rspec, serialize

__all__ = ["build_request", "format_cores"]


def build_request(topology: Topology, *, generated: datetime | None = None) -> bytes:
    root = new_rspec("request", REQUEST_SCHEMA_URL, generated=generated)
    for node in topology.nodes:
        _node(root, node, topology)
    for link in topology.links:
        _link(root, link)
    return serialize(root)


def format_cores(cpu_milli: int) -> str:
    """Exact decimal cores: 1500 -> "1.5", 2000 -> "2"."""
    whole, frac = divmod(cpu_milli, 1000)
    return f"{whole}.{frac:03d}".rstrip("0").rstrip(".")


def _node(root: Element, node: NodeRequest, topology: Topology) -> None:
    el = child(root, "node", client_id=node.client_id, component_id=node.component_id,
               component_manager_id=node.component_manager_id,
               exclusive="true" if node.exclusive else "false")
    stype = child(el, "sliver_type", name=node.sliver_type)
    _xen(stype, node.resources)
    if node.image:
        child(stype, "disk_image", name=node.image)
    if node.hardware_type:
        child(el, "hardware_type", name=node.hardware_type)
    _services(el, node)
    for iface in topology.interfaces:
        if iface.node == node.client_id:
            ifel = child(el, "interface", client_id=iface.client_id)
            address = iface.address()
            if address is not None:
                child(ifel, "ip", address=str(address.ip), netmask=str(address.netmask),
                      type="ipv4")
    for name, count in node.resources.devices:
        for _ in range(count):
            child(el, "device", ns=SLICELAB, name=name)


def _xen(stype: Element, res: Resources) -> None:
    child(stype, "xen", ns=EMULAB, cores=format_cores(res.cpu_milli), ram=res.memory_mib,
          disk=res.disk_gib)


def _services(el: Element, node: NodeRequest) -> None:
    if not node.installs and not node.executes:
        return
    services = child(el, "services")
    for inst in node.installs:
        child(services, "install", url=inst.url, install_path=inst.path)
    for ex in node.executes:
        child(services, "execute", shell=ex.shell, command=ex.command)


def _link(root: Element, link: LinkRequest) -> None:
    el = child(root, "link", client_id=link.client_id)
    for ref in link.interfaces:
        child(el, "interface_ref", client_id=ref)
    if link.capacity_mbps or link.latency_ms or link.packet_loss:
        for src, dst in permutations(link.interfaces, 2):
            child(el, "property", source_id=src, dest_id=dst,
                  capacity=link.capacity_mbps * 1000 if link.capacity_mbps else None,
                  latency=repr(link.latency_ms) if link.latency_ms else None,
                  packet_loss=repr(link.packet_loss) if link.packet_loss else None)
    child(el, "link_type", name="lan")
