"""GENI v3 advertisement RSpec from the aggregate's inventory.

Standard elements carry what GENI tools read (nodes, hardware and sliver types with their
images, availability, interfaces, links with capacity in kbps); sizes travel in slicelab's
own extension: ``<slicelab:capacity cores= memory_mib= disk_gib=/>`` (the whole node) and
``<slicelab:free .../>`` (what is left now), plus ``<slicelab:site name=/>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from slicelab.domain.resources import Resources

from .document import Element
from .namespaces import AD_SCHEMA_URL, SLICELAB
from .request import format_cores
from .writer import child, new_rspec, serialize

__all__ = ["Inventory", "InventoryInterface", "InventoryLink", "InventoryNode",
           "build_advertisement"]


@dataclass(frozen=True, slots=True)
class InventoryInterface:
    component_id: str
    name: str | None = None
    role: str | None = None  # "control" or "experimental"


@dataclass(frozen=True, slots=True)
class InventoryNode:
    urn: str
    name: str
    site: str | None = None
    hardware_types: tuple[str, ...] = ()
    sliver_types: tuple[str, ...] = ("default-vm",)
    available: bool = True
    exclusive: bool = False  # whether a whole node may be had
    capacity: Resources = field(default_factory=Resources)
    free: Resources | None = None
    images: tuple[str, ...] = ()  # the first is the default
    interfaces: tuple[InventoryInterface, ...] = ()


@dataclass(frozen=True, slots=True)
class InventoryLink:
    urn: str
    name: str
    endpoints: tuple[str, str]  # interface component_ids
    capacity_mbps: int | None = None
    link_type: str = "lan"


@dataclass(frozen=True, slots=True)
class Inventory:
    aggregate_urn: str
    nodes: tuple[InventoryNode, ...] = ()
    links: tuple[InventoryLink, ...] = ()


def build_advertisement(inventory: Inventory, *, generated: datetime | None = None,
                        expires: datetime | None = None) -> bytes:
    root = new_rspec("advertisement", AD_SCHEMA_URL, generated=generated, expires=expires)
    for node in inventory.nodes:
        _node(root, node, inventory.aggregate_urn)
    for link in inventory.links:
        _link(root, link, inventory.aggregate_urn)
    return serialize(root)


def _node(root: Element, node: InventoryNode, aggregate: str) -> None:
    el = child(root, "node", component_id=node.urn, component_manager_id=aggregate,
               component_name=node.name, exclusive="true" if node.exclusive else "false")
    for hw in node.hardware_types:
        child(el, "hardware_type", name=hw)
    for stype in node.sliver_types:
        st = child(el, "sliver_type", name=stype)
        for i, image in enumerate(node.images):
            child(st, "disk_image", name=image, default="true" if i == 0 else None)
    child(el, "available", now="true" if node.available else "false")
    for iface in node.interfaces:
        child(el, "interface", component_id=iface.component_id, component_name=iface.name,
              role=iface.role)
    _sizes(el, "capacity", node.capacity)
    if node.free is not None:
        _sizes(el, "free", node.free)
    if node.site:
        child(el, "site", ns=SLICELAB, name=node.site)


def _sizes(el: Element, tag: str, res: Resources) -> None:
    child(el, tag, ns=SLICELAB, cores=format_cores(res.cpu_milli), memory_mib=res.memory_mib,
          disk_gib=res.disk_gib)


def _link(root: Element, link: InventoryLink, aggregate: str) -> None:
    el = child(root, "link", component_id=link.urn, component_name=link.name)
    child(el, "component_manager", name=aggregate)
    for end in link.endpoints:
        child(el, "interface_ref", component_id=end)
    if link.capacity_mbps:
        a, b = link.endpoints
        for src, dst in ((a, b), (b, a)):
            child(el, "property", source_id=src, dest_id=dst,
                  capacity=link.capacity_mbps * 1000)
    child(el, "link_type", name=link.link_type)
