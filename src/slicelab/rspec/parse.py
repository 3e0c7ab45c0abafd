"""GENI RSpec v3 request -> :class:`~slicelab.domain.topology.Topology`, checked against an Offer.

Order of checks: safe XML (size, no DTD) -> GENI v3 namespace and ``type="request"`` -> the
v3 request schema (unknown unqualified attributes tolerated with a note) -> extensions (table
in :mod:`.namespaces`) -> nodes, interfaces and links against the :class:`~.offer.Offer`.
Every refusal names the element and its line.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from slicelab.domain.resources import Resources
from slicelab.domain.topology import (
    Execute,
    Install,
    InterfaceRequest,
    LinkRequest,
    NodeRequest,
    Topology,
)

from . import fields
from .document import (
    MAX_RSPEC_BYTES,
    Element,
    describe,
    load_document,
    local_name,
    namespace_of,
)
from .errors import InvalidRSpec, NotOffered
from .namespaces import (
    EMULAB,
    GENI_V3,
    OTHER_FORMATS,
    SLICELAB,
    Treatment,
    extension_for,
)
from .notes import Notes
from .offer import ForeignNodes, ImageOffer, Offer, SliverTypeOffer
from .schema import check_request_schema

__all__ = ["ParsedRequest", "parse_request"]

_LINK_TYPES = {"", "lan", "vlan"}
_HANDLED = {(EMULAB, "xen"), (SLICELAB, "device")}


@dataclass(frozen=True, slots=True)
class ParsedRequest:
    """The topology for this aggregate, notes for the user, and what was left to others."""

    topology: Topology
    notes: tuple[str, ...] = ()
    ignored_nodes: tuple[str, ...] = ()
    ignored_links: tuple[str, ...] = ()


def parse_request(data: bytes | str, *, offer: Offer,
                  max_bytes: int = MAX_RSPEC_BYTES) -> ParsedRequest:
    """Parse a GENI v3 request RSpec; raise an :class:`~.errors.InvalidRSpec` if unusable."""
    root = load_document(data, max_bytes=max_bytes)
    notes = Notes()
    check_root(root, kind="request", notes=notes)
    check_request_schema(root, notes)
    _check_extensions(root, notes)
    return _Reader(offer, notes).read(root)


def check_root(root: Element, *, kind: str, notes: Notes) -> None:
    """The root must be a GENI v3 ``<rspec type=kind>``."""
    ns = namespace_of(root)
    if ns != GENI_V3:
        known = OTHER_FORMATS.get(ns, "an unknown format" if ns else "no namespace")
        raise InvalidRSpec(f"namespace {ns or '(none)'!r} is {known}; slicelab reads GENI "
                           f"RSpec v3 ({GENI_V3})", element="<rspec>", line=root.sourceline)
    if root.tag != f"{{{GENI_V3}}}rspec":
        raise InvalidRSpec("the root element must be <rspec>", element=describe(root),
                           line=root.sourceline)
    if (root.get("type") or "").strip() != kind:
        raise InvalidRSpec(f"type={root.get('type')!r}, but a {kind} RSpec is needed here",
                           element="<rspec>", line=root.sourceline)
    if root.getroottree().docinfo.xml_version == "1.1":
        notes.add("XML 1.1 declaration read as XML 1.0")


def _check_extensions(el: Element, notes: Notes) -> None:
    for child in el:
        if not isinstance(child.tag, str):
            continue
        ns = namespace_of(child)
        if ns == GENI_V3:
            _check_extensions(child, notes)
        elif (ns, local_name(child)) not in _HANDLED:
            _extension(child, ns, notes)


def _extension(el: Element, ns: str, notes: Notes) -> None:
    ext = extension_for(ns)
    prefix = el.prefix or ext.prefix
    if ext.treatment is Treatment.REFUSE:
        raise NotOffered(ext.reason, element=describe(el, prefix=prefix), line=el.sourceline)
    notes.add(f"extension element {prefix}:{local_name(el)} ignored ({ext.reason})")


def _children(el: Element, name: str, ns: str = GENI_V3) -> list[Element]:
    return [c for c in el if c.tag == f"{{{ns}}}{name}"]


def _one(el: Element, name: str, ns: str = GENI_V3) -> Element | None:
    found = _children(el, name, ns)
    if len(found) > 1:
        raise InvalidRSpec(f"has {len(found)} <{name}> elements; one is allowed here",
                           element=describe(el), line=found[1].sourceline)
    return found[0] if found else None


class _Reader:
    def __init__(self, offer: Offer, notes: Notes) -> None:
        self.offer = offer
        self.notes = notes
        self.seen: dict[str, int] = {}
        self.nodes: list[NodeRequest] = []
        self.interfaces: dict[str, InterfaceRequest] = {}
        self.links: list[LinkRequest] = []
        self.foreign: dict[str, str] = {}  # interface client_id -> its component manager
        self.used: dict[str, str] = {}  # interface client_id -> link client_id
        self.ignored_nodes: list[str] = []
        self.ignored_links: list[str] = []
        self.foreign_cms: set[str] = set()

    def read(self, root: Element) -> ParsedRequest:
        for node in _children(root, "node"):
            self._node(node)
        for link in _children(root, "link"):
            self._link(link)
        self._require_nodes(root)
        topology = Topology(nodes=tuple(self.nodes), interfaces=tuple(self.interfaces.values()),
                            links=tuple(self.links))
        return ParsedRequest(topology, self.notes.items(), tuple(self.ignored_nodes),
                             tuple(self.ignored_links))

    def _claim(self, el: Element) -> str:
        cid = el.get("client_id")
        if cid is None or not cid.strip():
            raise InvalidRSpec("needs a client_id", element=describe(el), line=el.sourceline)
        if cid in self.seen:
            raise InvalidRSpec(f"duplicate client_id {cid!r} (first used at line "
                               f"{self.seen[cid]})", element=describe(el), line=el.sourceline)
        self.seen[cid] = el.sourceline or 0
        return str(cid)

    # nodes -------------------------------------------------------------------------------

    def _node(self, el: Element) -> None:
        cid = self._claim(el)
        cm = fields.text(el, "component_manager_id", notes=self.notes)
        if not self.offer.is_ours(cm):
            self._foreign_node(el, cid, cm or "")
            return
        self.nodes.append(_NodeReader(self.offer, self.notes, el, cid).read())
        for iface in _children(el, "interface"):
            self._interface(iface, cid)

    def _foreign_node(self, el: Element, cid: str, cm: str) -> None:
        if self.offer.foreign_nodes is ForeignNodes.REFUSE:
            raise NotOffered(f"is bound to another aggregate ({cm}); this aggregate is "
                             f"{self.offer.aggregate_urn}", element=describe(el),
                             line=el.sourceline)
        self.ignored_nodes.append(cid)
        self.foreign_cms.add(cm)
        self.notes.add(f"node {cid!r} is bound to {cm}; left to that aggregate")
        for iface in _children(el, "interface"):
            self.foreign[self._claim(iface)] = cm

    def _interface(self, el: Element, node: str) -> None:
        cid = self._claim(el)
        ip = _one(el, "ip")
        address = fields.ipv4(ip, self.notes) if ip is not None else None
        self.interfaces[cid] = InterfaceRequest(client_id=cid, node=node, ipv4=address)

    def _require_nodes(self, root: Element) -> None:
        if self.nodes:
            return
        if self.ignored_nodes:
            elsewhere = ", ".join(sorted(set(self.foreign.values()) | self.foreign_cms))
            raise NotOffered(f"no node in this request is for this aggregate "
                             f"({self.offer.aggregate_urn}); they are bound to {elsewhere}",
                             element="<rspec>", line=root.sourceline)
        raise InvalidRSpec("the request asks for no nodes", element="<rspec>",
                           line=root.sourceline)

    # links -------------------------------------------------------------------------------

    def _link(self, el: Element) -> None:
        cid = self._claim(el)
        refs = self._refs(el)
        here = [r for r in refs if r in self.interfaces]
        away = sorted({self.foreign[r] for r in refs if r in self.foreign})
        if away and not here:
            self.ignored_links.append(cid)
            self.notes.add(f"link {cid!r} lies wholly at other aggregates; left to them")
            return
        if away:
            raise NotOffered(f"joins interfaces here to interfaces at {', '.join(away)}; "
                             "links across aggregates (stitching) are not offered",
                             element=describe(el), line=el.sourceline)
        self._link_type(el)
        for hop in _children(el, "component_hop"):
            self.notes.add(f"line {hop.sourceline}: component_hop ignored")
        self.links.append(self._link_request(el, cid, refs))

    def _refs(self, el: Element) -> list[str]:
        refs: list[str] = []
        for ref in _children(el, "interface_ref"):
            rid = fields.text(ref, "client_id", notes=self.notes) or ""
            if rid not in self.interfaces and rid not in self.foreign:
                raise InvalidRSpec(f"interface_ref {rid!r} names no interface of any node",
                                   element=describe(ref), line=ref.sourceline)
            if rid in refs or rid in self.used:
                where = self.used.get(rid, el.get("client_id"))
                raise InvalidRSpec(f"interface {rid!r} is already on link {where!r}",
                                   element=describe(ref), line=ref.sourceline)
            refs.append(rid)
        if len(refs) < 2:
            raise InvalidRSpec(f"a link needs at least two interface_refs, has {len(refs)}",
                               element=describe(el), line=el.sourceline)
        return refs

    def _link_type(self, el: Element) -> None:
        for lt in _children(el, "link_type"):
            name = (lt.get("name") or "").strip()
            if name.lower() not in _LINK_TYPES:
                raise NotOffered(f"link_type {name!r} is not offered; links here are "
                                 "layer-2 segments (lan)", element=describe(lt),
                                 line=lt.sourceline)

    def _link_request(self, el: Element, cid: str, refs: list[str]) -> LinkRequest:
        for ref in refs:
            self.used[ref] = cid
        props = _children(el, "property")
        for prop in props:
            _check_endpoints(prop, refs)
        return LinkRequest(client_id=cid, interfaces=tuple(refs),
                           capacity_mbps=self._capacity(cid, props),
                           latency_ms=self._impaired(cid, props, "latency", 1e7),
                           packet_loss=self._impaired(cid, props, "packet_loss", 1.0))

    def _capacity(self, cid: str, props: list[Element]) -> int | None:
        values = [v for p in props
                  if (v := fields.decimal(p, "capacity", minimum=1e-9)) is not None]
        if not values:
            return None
        if len(set(values)) > 1:
            self.notes.add(f"link {cid!r}: capacities differ by direction "
                           f"({', '.join(f'{v:g}' for v in values)} kbps); the smallest is "
                           "applied both ways")
        kbps = min(values)
        if kbps % 1000:
            self.notes.add(f"link {cid!r}: capacity {kbps:g} kbps rounded up to "
                           f"{math.ceil(kbps / 1000)} Mbit/s")
        return math.ceil(kbps / 1000)

    def _impaired(self, cid: str, props: list[Element], attr: str,
                  maximum: float) -> float | None:
        values = [v for p in props
                  if (v := fields.decimal(p, attr, maximum=maximum)) is not None]
        if not values or max(values) == 0:
            return None
        what = "latency" if attr == "latency" else "packet loss"
        self.notes.add(f"link {cid!r}: {what} {max(values):g} requested but not enforced "
                       "here")
        return max(values)


def _check_endpoints(prop: Element, refs: list[str]) -> None:
    for attr in ("source_id", "dest_id"):
        value = (prop.get(attr) or "").strip()
        if value not in refs:
            raise InvalidRSpec(f"{attr}={value!r} is not an interface on this link",
                               element=describe(prop), line=prop.sourceline)


class _NodeReader:
    """One ``<node>`` of this aggregate -> :class:`NodeRequest`."""

    def __init__(self, offer: Offer, notes: Notes, el: Element, cid: str) -> None:
        self.offer, self.notes, self.el, self.cid = offer, notes, el, cid
        self.stype = _one(el, "sliver_type")

    def read(self) -> NodeRequest:
        offered = self._sliver_type()
        cm = self.el.get("component_manager_id")
        installs, executes = self._services()
        return NodeRequest(
            client_id=self.cid, resources=self._resources(offered), image=self._image(),
            sliver_type=offered.kind.value, exclusive=self._exclusive(offered),
            component_id=self._component_id(),
            component_manager_id=self.offer.aggregate_urn if cm else None,
            hardware_type=self._hardware_type(), installs=installs, executes=executes)

    def _fail(self, el: Element, message: str) -> NotOffered:
        return NotOffered(f"node {self.cid!r}: {message}", element=describe(el),
                          line=el.sourceline)

    def _sliver_type(self) -> SliverTypeOffer:
        name = self.offer.default_sliver_type
        if self.stype is not None:
            name = (self.stype.get("name") or "").strip()
        offered = self.offer.sliver_type(name)
        if offered is None:
            raise self._fail(self.stype if self.stype is not None else self.el,
                             f"sliver type {name!r} is not offered by this aggregate "
                             f"(offered: {self.offer.sliver_type_names()})")
        return offered

    def _resources(self, offered: SliverTypeOffer) -> Resources:
        base = offered.resources
        xen = _one(self.stype, "xen", EMULAB) if self.stype is not None else None
        devices = tuple((d.get("name") or "", 1) for d in _children(self.el, "device", SLICELAB))
        if xen is None:
            return Resources(base.cpu_milli, base.memory_mib, base.disk_gib,
                             base.bandwidth_mbps, base.devices + devices)
        cores = fields.decimal(xen, "cores", prefix="emulab", maximum=1e6)
        ram = fields.decimal(xen, "ram", prefix="emulab", integer=True, maximum=2**40)
        disk = fields.decimal(xen, "disk", prefix="emulab", integer=True, maximum=2**30)
        return Resources(base.cpu_milli if cores is None else round(cores * 1000),
                         base.memory_mib if ram is None else int(ram),
                         base.disk_gib if disk is None else int(disk),
                         base.bandwidth_mbps, base.devices + devices)

    def _image(self) -> str | None:
        disk = _one(self.stype, "disk_image") if self.stype is not None else None
        if disk is None:
            return self.offer.default_image
        name = (disk.get("name") or "").strip()
        image = self.offer.image(name)
        if image is None:
            raise self._fail(disk, f"disk image {name!r} is not offered by this aggregate "
                                   f"(offered: {self.offer.image_names()})")
        self._note_image(name, image)
        return image.name

    def _note_image(self, name: str, image: ImageOffer) -> None:
        if name != image.name:
            self.notes.add(f"node {self.cid!r}: disk image {name!r} is served by image "
                           f"{image.name!r}")

    def _exclusive(self, offered: SliverTypeOffer) -> bool:
        asked = fields.boolean(self.el, "exclusive")
        if asked and not self.offer.exclusive:
            raise self._fail(self.el, "exclusive='true' asks for a whole physical node; this "
                                      "aggregate offers shared nodes only")
        if asked is False and offered.whole_node:
            self.notes.add(f"node {self.cid!r}: sliver type {offered.name!r} is a whole node; "
                           "exclusive='false' does not apply")
        return bool(asked) or offered.whole_node

    def _hardware_type(self) -> str | None:
        found = _children(self.el, "hardware_type")
        if not found:
            return None
        name = (found[0].get("name") or "").strip()
        offered = self.offer.hardware_types
        if offered and name not in offered:
            raise self._fail(found[0], f"hardware type {name!r} is not offered by this "
                                       f"aggregate (offered: {', '.join(offered)})")
        return name

    def _component_id(self) -> str | None:
        value = fields.text(self.el, "component_id", notes=self.notes)
        if value and self.offer.node_urns and value not in self.offer.node_urns:
            raise self._fail(self.el, f"component_id {value!r} is not a node of this "
                                      "aggregate")
        return value or None

    def _services(self) -> tuple[tuple[Install, ...], tuple[Execute, ...]]:
        installs: list[Install] = []
        executes: list[Execute] = []
        for services in _children(self.el, "services"):
            installs += [Install(url=(i.get("url") or "").strip(),
                                 path=(i.get("install_path") or "").strip())
                         for i in _children(services, "install")]
            executes += [Execute(command=e.get("command") or "", shell=e.get("shell") or "sh")
                         for e in _children(services, "execute")]
            if _children(services, "login"):
                self.notes.add(f"node {self.cid!r}: login services in a request are ignored")
        return tuple(installs), tuple(executes)
