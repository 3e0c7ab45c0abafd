"""Topologies as JSON, and the topology file (YAML or JSON) people write by hand.

:func:`topology_to_json` gives the whole model (interfaces named, links listing them);
:func:`topology_from_json` reads that back, and also the shorter hand-written form where a
link lists ``members`` (``"node"`` or ``"node:10.0.0.1/24"``) and slicelab names the
interfaces ``<node>:<link>``. See docs/rspec.md for the format.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import yaml

from slicelab.domain.errors import InvalidTopology
from slicelab.domain.resources import Resources
from slicelab.domain.topology import (
    Execute,
    Install,
    InterfaceRequest,
    LinkRequest,
    NodeRequest,
    Topology,
)

from . import units
from .document import MAX_RSPEC_BYTES
from .request import format_cores

__all__ = ["load_topology_file", "loads_topology", "topology_from_json", "topology_to_json"]

_TOP_KEYS = {"nodes", "links", "lans"}
_NODE_KEYS = {"name", "image", "cores", "memory", "disk", "bandwidth", "devices", "sliver_type",
              "exclusive", "component_id", "component_manager_id", "hardware_type", "site",
              "install", "execute", "interfaces"}
_LINK_KEYS = {"name", "members", "interfaces", "capacity", "latency", "loss", "addresses"}


def topology_to_json(topology: Topology) -> dict[str, Any]:
    return {"nodes": [_node_json(n, topology) for n in topology.nodes],
            "links": [_link_json(lk) for lk in topology.links]}


def _node_json(node: NodeRequest, topology: Topology) -> dict[str, Any]:
    res = node.resources
    out: dict[str, Any] = {"name": node.client_id, "sliver_type": node.sliver_type,
                           "cores": float(format_cores(res.cpu_milli)),
                           "memory": res.memory_mib, "disk": res.disk_gib}
    optional = {"image": node.image, "component_id": node.component_id,
                "component_manager_id": node.component_manager_id,
                "hardware_type": node.hardware_type, "site": node.site,
                "bandwidth": res.bandwidth_mbps or None}
    out.update({k: v for k, v in optional.items() if v is not None})
    if node.exclusive:
        out["exclusive"] = True
    if res.devices:
        out["devices"] = [n for n, c in res.devices for _ in range(c)]
    if node.installs:
        out["install"] = [{"url": i.url, "path": i.path} for i in node.installs]
    if node.executes:
        out["execute"] = [{"command": e.command, "shell": e.shell} for e in node.executes]
    out["interfaces"] = [_iface_json(i) for i in topology.interfaces if i.node == node.client_id]
    return out


def _iface_json(iface: InterfaceRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"name": iface.client_id}
    if iface.ipv4:
        out["address"] = iface.ipv4
    if iface.mac:
        out["mac"] = iface.mac
    return out


def _link_json(link: LinkRequest) -> dict[str, Any]:
    out: dict[str, Any] = {"name": link.client_id, "interfaces": list(link.interfaces)}
    optional = {"capacity": link.capacity_mbps, "latency": link.latency_ms,
                "loss": link.packet_loss}
    out.update({k: v for k, v in optional.items() if v is not None})
    return out


def load_topology_file(path: str | Path, *, max_bytes: int = MAX_RSPEC_BYTES) -> Topology:
    file = Path(path)
    if file.stat().st_size > max_bytes:
        raise InvalidTopology(f"{file}: larger than {max_bytes} bytes", field="file")
    return loads_topology(file.read_text(encoding="utf-8"))


def loads_topology(text: str) -> Topology:
    """A topology file's text, YAML or JSON (JSON is YAML)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InvalidTopology(f"not YAML or JSON: {exc}", field="file") from None
    return topology_from_json(data)


def topology_from_json(data: Any, *,
                       defaults: Callable[[NodeRequest], NodeRequest] | None = None) -> Topology:
    """The topology ``data`` describes; ``defaults`` fills in what a node leaves out."""
    top = _mapping(data, "topology", _TOP_KEYS)
    nodes: list[NodeRequest] = []
    interfaces: list[InterfaceRequest] = []
    for i, raw in enumerate(_list(top.get("nodes"), "nodes")):
        node, ifaces = _node(raw, f"nodes[{i}]")
        nodes.append(node if defaults is None else defaults(node))
        interfaces += ifaces
    links = [_link(raw, where, interfaces) for raw, where in _link_entries(top)]
    return Topology(nodes=tuple(nodes), interfaces=tuple(interfaces), links=tuple(links))


def _mapping(value: Any, where: str, keys: set[str]) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidTopology(f"{where}: expected a mapping, got {type(value).__name__}",
                              field=where)
    unknown = sorted(set(map(str, value)) - keys)
    if unknown:
        raise InvalidTopology(f"{where}: unknown key(s) {', '.join(unknown)}; known: "
                              f"{', '.join(sorted(keys))}", field=where)
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidTopology(f"{where}: expected a list", field=where)
    return value


def _str(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise InvalidTopology(f"{where}: expected a non-empty string", field=where)
    return value


def _opt_str(raw: Mapping[str, Any], key: str, where: str) -> str | None:
    return None if raw.get(key) is None else _str(raw[key], f"{where}.{key}")


def _node(value: Any, where: str) -> tuple[NodeRequest, list[InterfaceRequest]]:
    raw = _mapping(value, where, _NODE_KEYS)
    name = _str(raw.get("name"), f"{where}.name")
    exclusive = raw.get("exclusive", False)
    if not isinstance(exclusive, bool):
        raise InvalidTopology(f"{where}.exclusive: expected true or false", field=where)
    node = NodeRequest(
        client_id=name, resources=_resources(raw, where), image=_opt_str(raw, "image", where),
        sliver_type=_opt_str(raw, "sliver_type", where) or "container", exclusive=exclusive,
        component_id=_opt_str(raw, "component_id", where),
        component_manager_id=_opt_str(raw, "component_manager_id", where),
        hardware_type=_opt_str(raw, "hardware_type", where),
        site=_opt_str(raw, "site", where), installs=_installs(raw, where),
        executes=_executes(raw, where))
    return node, _declared_interfaces(raw, name, where)


def _resources(raw: Mapping[str, Any], where: str) -> Resources:
    cores = raw.get("cores", 0)
    if isinstance(cores, bool) or not isinstance(cores, int | float) or cores < 0:
        raise InvalidTopology(f"{where}.cores: expected a non-negative number", field=where)
    devices = [_str(d, f"{where}.devices") for d in _list(raw.get("devices"), where)]
    return Resources(cpu_milli=round(cores * 1000),
                     memory_mib=units.size(raw.get("memory", 0), unit="m",
                                           where=f"{where}.memory"),
                     disk_gib=units.size(raw.get("disk", 0), unit="g", where=f"{where}.disk"),
                     bandwidth_mbps=units.megabits(raw.get("bandwidth", 0),
                                                   where=f"{where}.bandwidth"),
                     devices=tuple((d, 1) for d in devices))


def _installs(raw: Mapping[str, Any], where: str) -> tuple[Install, ...]:
    items = _list(raw.get("install"), f"{where}.install")
    out = []
    for i, item in enumerate(items):
        entry = _mapping(item, f"{where}.install[{i}]", {"url", "path"})
        out.append(Install(url=_str(entry.get("url"), f"{where}.install[{i}].url"),
                           path=_str(entry.get("path"), f"{where}.install[{i}].path")))
    return tuple(out)


def _executes(raw: Mapping[str, Any], where: str) -> tuple[Execute, ...]:
    out = []
    for i, item in enumerate(_list(raw.get("execute"), f"{where}.execute")):
        here = f"{where}.execute[{i}]"
        if isinstance(item, str):
            item = {"command": item}
        entry = _mapping(item, here, {"command", "shell"})
        out.append(Execute(command=_str(entry.get("command"), f"{here}.command"),
                           shell=_opt_str(entry, "shell", here) or "sh"))
    return tuple(out)


def _declared_interfaces(raw: Mapping[str, Any], node: str,
                         where: str) -> list[InterfaceRequest]:
    out = []
    for i, item in enumerate(_list(raw.get("interfaces"), f"{where}.interfaces")):
        here = f"{where}.interfaces[{i}]"
        entry = _mapping(item, here, {"name", "address", "mac"})
        out.append(InterfaceRequest(client_id=_str(entry.get("name"), f"{here}.name"),
                                    node=node, ipv4=_opt_str(entry, "address", here),
                                    mac=_opt_str(entry, "mac", here)))
    return out


def _link_entries(top: Mapping[str, Any]) -> Iterator[tuple[Any, str]]:
    for key in ("links", "lans"):
        for i, raw in enumerate(_list(top.get(key), key)):
            yield raw, f"{key}[{i}]"


def _link(value: Any, where: str, interfaces: list[InterfaceRequest]) -> LinkRequest:
    raw = _mapping(value, where, _LINK_KEYS)
    name = _str(raw.get("name"), f"{where}.name")
    if ("members" in raw) == ("interfaces" in raw):
        raise InvalidTopology(f"{where}: give either members or interfaces", field=where)
    if "members" in raw:
        refs = _members(raw, name, where, interfaces)
    else:
        refs = tuple(_str(r, f"{where}.interfaces") for r in _list(raw["interfaces"], where))
    return LinkRequest(
        client_id=name, interfaces=refs,
        capacity_mbps=None if raw.get("capacity") is None else units.megabits(
            raw["capacity"], where=f"{where}.capacity"),
        latency_ms=None if raw.get("latency") is None else units.milliseconds(
            raw["latency"], where=f"{where}.latency"),
        packet_loss=None if raw.get("loss") is None else units.fraction(
            raw["loss"], where=f"{where}.loss"))


def _members(raw: Mapping[str, Any], link: str, where: str,
             interfaces: list[InterfaceRequest]) -> tuple[str, ...]:
    members = [_str(m, f"{where}.members") for m in _list(raw["members"], where)]
    pool = _address_pool(raw.get("addresses"), members, where)
    refs = []
    for member in members:
        node, _, address = member.partition(":")
        iface = InterfaceRequest(client_id=f"{node}:{link}", node=node,
                                 ipv4=address or next(pool, None))
        interfaces.append(iface)
        refs.append(iface.client_id)
    return tuple(refs)


def _address_pool(subnet: Any, members: list[str], where: str) -> Iterator[str]:
    if subnet is None:
        return iter(())
    try:
        net = ipaddress.IPv4Network(_str(subnet, f"{where}.addresses"), strict=True)
    except ValueError as exc:
        raise InvalidTopology(f"{where}.addresses: {exc}", field=where) from None
    taken = {m.partition(":")[2].split("/")[0] for m in members}
    return (f"{h}/{net.prefixlen}" for h in net.hosts() if str(h) not in taken)
