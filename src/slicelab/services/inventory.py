"""Inventory: what the aggregate has and what is free, as a view, an advertisement and an index.

* :func:`resources_view` — per site, per node: capacity, what is free over a window (capacity
  minus the peak of the active bookings that overlap it, see :func:`~slicelab.domain.calendar.
  peak_usage`), boot state, health (:func:`~slicelab.services.heartbeats.health_of`).
* :func:`advertisement` — the same nodes as an :class:`slicelab.rspec.Inventory` for
  :func:`slicelab.rspec.build_advertisement`, with each host's uplink as a link to its site's
  switch; :func:`advertisement_to_json` / :func:`advertisement_from_json` are its JSON form
  (the CLI renders XML from it with the same function the server uses).
* :func:`index_nodes` — rewrites the free-node index (``node_capacity``) of some nodes inside
  the caller's transaction: call it wherever bookings or a node's inventory or boot state
  change. Its ``free`` is the *headroom*: capacity minus the peak of all the node's bookings
  from now on, so a node the index returns fits any window (as in
  :class:`~slicelab.domain.placement.HostIndex`).
* :class:`SqlFreeHosts` — the :class:`~slicelab.domain.placement.FreeHosts` seam answered
  from that index.
* :func:`aggregate_offer` — what ``rspec validate`` checks requests against.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from slicelab.domain.calendar import ALL_TIME, Booking, Window, peak_usage
from slicelab.domain.errors import InvalidInput
from slicelab.domain.inventory import Host
from slicelab.domain.nodes import Node
from slicelab.domain.resources import Resources
from slicelab.domain.roles import Caller, Operation, authorize
from slicelab.rspec import ImageOffer, InventoryInterface, InventoryLink, InventoryNode, Offer
from slicelab.rspec import Inventory as AdInventory
from slicelab.store.inventory import CapacityRow
from slicelab.store.uow import UnitOfWork

from .audit import utcnow
from .heartbeats import DEFAULT_INTERVAL, DEFAULT_MISSED, Health, health_of

__all__ = [
    "NodeResources",
    "SiteResources",
    "SqlFreeHosts",
    "advertisement",
    "advertisement_from_json",
    "advertisement_to_json",
    "aggregate_offer",
    "aggregate_urn",
    "index_nodes",
    "resources_view",
]

DEFAULT_IMAGE = "minimal"


def aggregate_urn(authority: str) -> str:
    return f"urn:publicid:IDN+{authority}+authority+cm"


def aggregate_offer(authority: str) -> Offer:
    """Containers under every common sliver type name, whole nodes, the built-in image."""
    return Offer.containers(aggregate_urn=aggregate_urn(authority),
                            images=[ImageOffer(DEFAULT_IMAGE)], default_image=DEFAULT_IMAGE,
                            exclusive=True)


# -- the view ---------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class NodeResources:
    name: str
    id: str
    urn: str
    site: str
    boot_state: str
    health: Health
    last_seen: datetime | None
    available: bool  # accepts slivers and is up
    capacity: Resources
    free: Resources  # over the window; nothing when the node is not available
    uplink_mbps: int | None = None
    interfaces: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class SiteResources:
    name: str
    nodes: tuple[NodeResources, ...]

    @property
    def capacity(self) -> Resources:
        return sum((n.capacity for n in self.nodes), Resources())

    @property
    def free(self) -> Resources:
        return sum((n.free for n in self.nodes), Resources())

    @property
    def up(self) -> int:
        return sum(1 for n in self.nodes if n.health is Health.UP)


def _window(start: datetime | None, end: datetime | None, now: datetime) -> Window:
    start = start or now
    return Window(start, end or start + timedelta(seconds=1))


def _uplink(raw: Mapping[str, Any]) -> int | None:
    value = raw.get("uplink_mbps", raw.get("bandwidth_cap_mbps"))
    return int(value) if isinstance(value, int | float) and value > 0 else None


def _node_resources(node: Node, raw: Mapping[str, Any], bookings: Iterable[Booking],
                    window: Window, now: datetime) -> NodeResources:
    health = health_of(node.last_seen, now, interval=DEFAULT_INTERVAL, missed=DEFAULT_MISSED)
    available = node.accepts_slivers and health is Health.UP
    usage = peak_usage(bookings, window)
    capacity = node.capacity()
    free = Resources() if not available or usage.exclusive else \
        _floor(capacity - usage.resources)
    names = tuple(str(i.get("name")) for i in node.inventory.interfaces if i.get("name"))
    return NodeResources(node.name, node.id, str(node.urn), node.site, node.boot_state.value,
                         health, node.last_seen, available, capacity, free, _uplink(raw), names)


def _floor(res: Resources) -> Resources:
    """Negative parts (a node that shrank under its bookings) count as nothing free."""
    return Resources(max(0, res.cpu_milli), max(0, res.memory_mib), max(0, res.disk_gib),
                     max(0, res.bandwidth_mbps), tuple((n, max(0, c)) for n, c in res.devices))


def resources_view(uow: UnitOfWork, caller: Caller, *, start: datetime | None = None,
                   end: datetime | None = None, site: str | None = None,
                   now: datetime | None = None) -> tuple[Window, list[SiteResources]]:
    """Every node per site with what is free over ``[start, end)`` (default: now)."""
    authorize(Operation.RESOURCES_READ, caller)
    now = now or utcnow()
    window = _window(start, end, now)
    if site is not None:
        uow.aggregate.sites.get(site)
    found = [n for n in uow.aggregate.nodes.list() if site is None or n.site == site]
    raw = uow.inventory.raw_inventories([n.id for n in found])
    booked: dict[str, list[Booking]] = {}
    for b in uow.leases.leases.overlapping(window, node_ids=[n.id for n in found]):
        booked.setdefault(b.host_id, []).append(b)
    per_site: dict[str, list[NodeResources]] = {s.name: [] for s in uow.aggregate.sites.list()
                                                if site is None or s.name == site}
    for node in found:
        per_site[node.site].append(_node_resources(node, raw.get(node.id, {}),
                                                   booked.get(node.id, ()), window, now))
    return window, [SiteResources(name, tuple(nodes)) for name, nodes in sorted(per_site.items())]


# -- the advertisement ------------------------------------------------------------------------

def _interface_urn(node_urn: str, name: str) -> str:
    return node_urn.replace("+node+", "+interface+", 1) + f":{name}"


def _ad_node(n: NodeResources) -> InventoryNode:
    ifaces = tuple(InventoryInterface(_interface_urn(n.urn, name), name,
                                      "control" if i == 0 else "experimental")
                   for i, name in enumerate(n.interfaces))
    return InventoryNode(urn=n.urn, name=n.name, site=n.site, hardware_types=("pc",),
                         available=n.available, exclusive=True, capacity=n.capacity,
                         free=n.free, images=(DEFAULT_IMAGE,), interfaces=ifaces)


def _ad_link(n: NodeResources, authority: str) -> InventoryLink | None:
    if not n.interfaces:
        return None
    switch = f"urn:publicid:IDN+{authority}+interface+{n.site}-switch:{n.name}"
    return InventoryLink(urn=f"urn:publicid:IDN+{authority}+link+{n.site}-{n.name}-uplink",
                         name=f"{n.name}-uplink", endpoints=(_interface_urn(n.urn, n.interfaces[0]),
                                                             switch),
                         capacity_mbps=n.uplink_mbps)


def advertisement(uow: UnitOfWork, caller: Caller, *, authority: str,
                  now: datetime | None = None) -> AdInventory:
    """What the aggregate offers now, for the advertisement RSpec and its JSON."""
    _, sites = resources_view(uow, caller, now=now)
    nodes = [n for s in sites for n in s.nodes]
    links = [lk for lk in (_ad_link(n, authority) for n in nodes) if lk is not None]
    return AdInventory(aggregate_urn(authority), tuple(_ad_node(n) for n in nodes), tuple(links))


def _res_json(res: Resources) -> dict[str, Any]:
    return {"cpu_milli": res.cpu_milli, "memory_mib": res.memory_mib, "disk_gib": res.disk_gib,
            "devices": dict(res.devices)}


def _res_from(data: Mapping[str, Any]) -> Resources:
    return Resources(int(data["cpu_milli"]), int(data["memory_mib"]), int(data["disk_gib"]), 0,
                     tuple((str(k), int(v)) for k, v in dict(data.get("devices", {})).items()))


def advertisement_to_json(inv: AdInventory) -> dict[str, Any]:
    nodes = [{"urn": n.urn, "name": n.name, "site": n.site,
              "hardware_types": list(n.hardware_types), "sliver_types": list(n.sliver_types),
              "available": n.available, "exclusive": n.exclusive,
              "capacity": _res_json(n.capacity),
              "free": _res_json(n.free) if n.free is not None else None,
              "images": list(n.images),
              "interfaces": [{"component_id": i.component_id, "name": i.name, "role": i.role}
                             for i in n.interfaces]} for n in inv.nodes]
    links = [{"urn": lk.urn, "name": lk.name, "endpoints": list(lk.endpoints),
              "capacity_mbps": lk.capacity_mbps, "link_type": lk.link_type} for lk in inv.links]
    return {"aggregate_urn": inv.aggregate_urn, "nodes": nodes, "links": links}


def _node_from(d: Mapping[str, Any]) -> InventoryNode:
    return InventoryNode(
        urn=d["urn"], name=d["name"], site=d.get("site"),
        hardware_types=tuple(d.get("hardware_types", ())),
        sliver_types=tuple(d.get("sliver_types", ("default-vm",))),
        available=bool(d.get("available", True)), exclusive=bool(d.get("exclusive", False)),
        capacity=_res_from(d["capacity"]), free=_res_from(d["free"]) if d.get("free") else None,
        images=tuple(d.get("images", ())),
        interfaces=tuple(InventoryInterface(i["component_id"], i.get("name"), i.get("role"))
                         for i in d.get("interfaces", ())))


def advertisement_from_json(data: Mapping[str, Any]) -> AdInventory:
    """The reverse of :func:`advertisement_to_json`; raises InvalidInput on a bad document."""
    try:
        links = tuple(InventoryLink(lk["urn"], lk["name"], (lk["endpoints"][0],
                                                            lk["endpoints"][1]),
                                    lk.get("capacity_mbps"), lk.get("link_type", "lan"))
                      for lk in data.get("links", ()))
        nodes = tuple(_node_from(n) for n in data.get("nodes", ()))
        return AdInventory(str(data["aggregate_urn"]), nodes, links)
    except (KeyError, IndexError, TypeError, ValueError) as exc:
        raise InvalidInput(f"not an advertisement document: {exc!r}", field="body") from None


# -- the free-node index ----------------------------------------------------------------------

def _headroom(node: Node, site_id: int, bookings: Iterable[Booking],
              now: datetime) -> CapacityRow:
    capacity = node.capacity()
    usage = peak_usage(bookings, Window(now, ALL_TIME.end))
    free = Resources() if usage.exclusive else _floor(capacity - usage.resources)
    return CapacityRow(node.id, site_id, node.accepts_slivers, capacity, free)


def index_nodes(uow: UnitOfWork, node_ids: Collection[str] | None = None, *,
                now: datetime | None = None) -> int:
    """Rewrite the free-node index rows of ``node_ids`` (all nodes when None); return how many.

    Runs in the caller's transaction, which commits it together with the change it follows.
    """
    now = now or utcnow()
    wanted = None if node_ids is None else set(node_ids)
    if wanted is not None and not wanted:
        return 0
    found = list(uow.aggregate.nodes.list() if wanted is None
                 else uow.aggregate.nodes.by_ids(wanted))
    site_ids = uow.inventory.site_ids()
    booked: dict[str, list[Booking]] = {}
    for b in uow.leases.leases.overlapping(Window(now, ALL_TIME.end),
                                           node_ids=[n.id for n in found]):
        booked.setdefault(b.host_id, []).append(b)
    rows = [_headroom(n, site_ids[n.site], booked.get(n.id, ()), now) for n in found]
    uow.inventory.put(rows)
    if wanted is not None:
        uow.inventory.remove(wanted - {n.id for n in found})
    return len(rows)


class SqlFreeHosts:
    """:class:`~slicelab.domain.placement.FreeHosts` from the ``node_capacity`` index.

    ``host_of`` maps a node id to the placement's :class:`Host` (an inventory snapshot). The
    index holds headroom, so every host returned fits any window; a host whose bookings leave
    room only in some windows is not returned (the in-memory index tries those too).
    """

    def __init__(self, uow_factory: Callable[[], UnitOfWork], host_of: Callable[[str], Host],
                 site_ids: Mapping[str, int]) -> None:
        self._uow_factory, self._host_of, self._site_ids = uow_factory, host_of, site_ids

    def free_hosts(self, need: Resources, window: Window, *, site: str | None = None,
                   hardware_type: str | None = None, limit: int = 10) -> list[Host]:
        if site is not None and site not in self._site_ids:
            return []
        site_id = self._site_ids[site] if site is not None else None
        with self._uow_factory() as uow:
            found = uow.inventory.free_nodes(need, site_id=site_id, limit=limit)
        hosts = [self._host_of(node_id) for node_id, _, _ in found]
        return [h for h in hosts if hardware_type is None or hardware_type in h.hardware_types]
