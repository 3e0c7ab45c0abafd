"""Placement: map every node of a requested topology to a host for a lease window.

A placement is valid when, over the whole window and together with what the calendar holds
already, no host's capacity or device is oversubscribed, bindings (``component_id`` = the
host's URN, name or id), sites, hardware types and devices are honoured, an exclusive node
gets a host that is empty for the window and keeps it to itself, a site's "one sliver per
slice per node" flag holds, and the links whose members land on different hosts fit on those
hosts' uplinks (each such host carries the link's capacity).

Strategy — greedy with bounded backtracking:

1. Order the nodes: bound ones, then exclusive ones, then each linked group (largest first)
   breadth-first from its largest node, so a node is placed right after its neighbours.
2. For each node try candidate hosts in this order: hosts that already hold its linked
   neighbours (fewer cross-host links); for the first node of a linked group, hosts that could
   hold the whole group; then every host that may fit, best fit first (least headroom).
3. Check each candidate exactly (the calendar's peak over the window plus what this
   placement has put on the host so far) and descend; on a dead end step back and try the
   next candidate. At most ``candidates_per_node`` fitting candidates per node and
   ``max_steps`` descents in all, so the search is bounded; a single node is placed whenever
   any host can take it, since failing candidates do not count.

The search is deterministic: every order is fixed by sizes, then by host id.

Candidates come from a :class:`HostIndex` built once per inventory snapshot and kept current
by the calendar's change notices: hosts grouped by (hardware types, device names, capacity
shape in powers of two), globally and per site, each group a sorted list keyed by *headroom*
(capacity minus the peak of all of the host's bookings, in millicores and MiB). Groups too
small for a request are skipped whole. A host whose headroom fits fits in any window; one
whose headroom does not but that has bookings may still fit this window, so those (kept in a
second sorted list per group) are tried after the rest. A query is a bisection and a short
walk, not a scan of all hosts.

When nothing fits, :class:`PlacementFailed` (an :class:`InsufficientResources`) names the
node or link, the constraint, the numbers from :meth:`Resources.shortfall` and the nearest
hosts, and carries the same as :attr:`PlacementFailed.diagnosis` for APIs.
"""

from __future__ import annotations

import heapq
from bisect import bisect_left, insort
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice
from typing import Any, Literal, Protocol

from .calendar import Booking, Calendar, Usage, Window
from .errors import InsufficientResources, InvalidInput, NotFound
from .inventory import Host, Inventory
from .resources import Resources
from .topology import NodeRequest, Topology

__all__ = [
    "Assignment",
    "Diagnosis",
    "FreeHosts",
    "HostIndex",
    "Nearest",
    "Placement",
    "PlacementFailed",
    "PlacementPolicy",
    "find_slot",
    "place",
]

_Key = tuple[int, int, str]  # (headroom millicores, headroom MiB, host id)
_Class = tuple[frozenset[str], frozenset[str], int, int]  # hw types, devices, shape bits
_FULL: tuple[int, int] = (-1, -1)


@dataclass(frozen=True, slots=True)
class PlacementPolicy:
    """How hard placement searches; the defaults suit interactive requests."""

    candidates_per_node: int = 8
    max_steps: int = 2000
    nearest: int = 3
    colocate: bool = True


@dataclass(frozen=True, slots=True)
class Assignment:
    node: str
    host_id: str
    resources: Resources  # what is booked: the request, or the whole host when exclusive
    exclusive: bool = False


@dataclass(frozen=True, slots=True)
class Placement:
    slice_id: str
    window: Window
    assignments: tuple[Assignment, ...]  # in topology order
    uplink_mbps: tuple[tuple[str, int], ...] = ()  # host id -> uplink bandwidth booked
    cross_host_links: tuple[str, ...] = ()

    def host_of(self, node: str) -> str:
        for a in self.assignments:
            if a.node == node:
                return a.host_id
        raise NotFound(f"no node {node!r} in this placement", field="node")

    def on_hosts(self, names: Mapping[str, str]) -> Placement:
        """This placement with each assignment's host id replaced by ``names[host id]``."""
        moved = tuple(Assignment(a.node, names[a.host_id], a.resources, a.exclusive)
                      for a in self.assignments)
        return Placement(self.slice_id, self.window, moved, self.uplink_mbps,
                         self.cross_host_links)

    def bookings(self, *, lease_id: str) -> tuple[Booking, ...]:
        """The calendar bookings of this placement; uplink use rides on each host's first."""
        uplink = dict(self.uplink_mbps)
        out = []
        for a in self.assignments:
            out.append(Booking(lease_id, a.host_id, self.slice_id, self.window, a.resources,
                               a.exclusive, uplink.pop(a.host_id, 0), a.node))
        return tuple(out)


@dataclass(frozen=True, slots=True)
class Nearest:
    host_id: str
    host_name: str
    shortfall: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class Diagnosis:
    """Why a request cannot be placed: the subject, the constraint, numbers, near misses."""

    subject: str  # "node n1" or "link l1"
    constraint: str  # capacity, exclusive, binding, availability, site, hardware_type,
    #                  device, one_sliver_per_slice_per_node, uplink, search
    detail: tuple[str, ...] = ()
    nearest: tuple[Nearest, ...] = ()

    def as_dict(self) -> dict[str, object]:
        return {"subject": self.subject, "constraint": self.constraint,
                "detail": list(self.detail),
                "nearest": [{"host_id": n.host_id, "host": n.host_name,
                             "shortfall": list(n.shortfall)} for n in self.nearest]}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Diagnosis:
        """The reverse of :meth:`as_dict`; raises KeyError or TypeError on a bad document."""
        nearest = tuple(Nearest(str(n["host_id"]), str(n["host"]),
                                tuple(str(x) for x in n.get("shortfall", ())))
                        for n in data.get("nearest", ()))
        return cls(str(data["subject"]), str(data["constraint"]),
                   tuple(str(x) for x in data.get("detail", ())), nearest)

    def message(self) -> str:
        text = f"cannot place {self.subject}: {self.constraint}"
        if self.detail:
            text += " (" + "; ".join(self.detail) + ")"
        if self.nearest:
            near = ", ".join(f"{n.host_name} [{'; '.join(n.shortfall) or 'fits alone'}]"
                             for n in self.nearest)
            text += f"; nearest hosts: {near}"
        return text


class PlacementFailed(InsufficientResources):
    """No placement satisfies the request; :attr:`diagnosis` says why, for APIs."""

    def __init__(self, diagnosis: Diagnosis, *, field: str | None = None) -> None:
        super().__init__(diagnosis.message(), field=field)
        self.diagnosis = diagnosis

    def extensions(self) -> dict[str, object]:
        return {"diagnosis": self.diagnosis.as_dict()}


class FreeHosts(Protocol):
    """The free-host query; :class:`HostIndex` answers it in memory, a store adapter in SQL."""

    def free_hosts(self, need: Resources, window: Window, *, site: str | None = None,
                   hardware_type: str | None = None, limit: int = 10) -> list[Host]: ...


# -- the index --------------------------------------------------------------------------------


def _class_of(host: Host) -> _Class:
    cap = host.capacity
    return (host.hardware_types, frozenset(name for name, _ in cap.devices),
            cap.cpu_milli.bit_length(), cap.memory_mib.bit_length())


@dataclass(slots=True)
class _Bucket:
    """Hosts of one class: all by headroom, and the booked ones again on their own."""

    keys: list[_Key] = field(default_factory=list)
    booked: list[_Key] = field(default_factory=list)
    max_cpu: int = 0
    max_mem: int = 0

    def add(self, host: Host, key: _Key, *, booked: bool) -> None:
        self.keys.append(key)
        if booked:
            self.booked.append(key)
        self.max_cpu = max(self.max_cpu, host.capacity.cpu_milli)
        self.max_mem = max(self.max_mem, host.capacity.memory_mib)


class HostIndex:
    """Available hosts grouped by class and sorted by headroom, kept current by the calendar.

    A class is (hardware types, device names, capacity shape rounded to powers of two), so a
    query skips whole groups of hosts that are too small, whatever their use.
    """

    def __init__(self, inventory: Inventory, calendar: Calendar, *, follow: bool = True) -> None:
        self.inventory = inventory
        self.calendar = calendar
        self._buckets: dict[tuple[str | None, _Class], _Bucket] = {}
        self._keys: dict[str, _Key] = {}
        self._booked: set[str] = set()
        self._homes: dict[str, tuple[_Bucket, _Bucket]] = {}  # host id -> global, site bucket
        self._match: dict[tuple[str | None, frozenset[str], frozenset[str]], list[_Bucket]] = {}
        for host in inventory.hosts.values():
            if host.available:
                self._keys[host.id] = self._key(host)
                if calendar.has_bookings(host.id):
                    self._booked.add(host.id)
        shared: dict[tuple[str, _Class], tuple[_Bucket, _Bucket]] = {}  # one per site, class
        for host_id, key in self._keys.items():
            host = inventory.hosts[host_id]
            place = (host.site, _class_of(host))
            homes = shared.get(place)
            if homes is None:
                homes = shared[place] = (self._buckets.setdefault((None, place[1]), _Bucket()),
                                         self._buckets.setdefault(place, _Bucket()))
            self._homes[host_id] = homes
            for bucket in homes:
                bucket.add(host, key, booked=host_id in self._booked)
        for bucket in self._buckets.values():
            bucket.keys.sort()
            bucket.booked.sort()
        if follow:
            calendar.subscribe(self.refresh)

    def _key(self, host: Host) -> _Key:
        usage = self.calendar.peak(host.id)
        if usage.exclusive:
            return _FULL[0], _FULL[1], host.id
        cap, used = host.capacity, usage.resources
        return cap.cpu_milli - used.cpu_milli, cap.memory_mib - used.memory_mib, host.id

    def refresh(self, host_id: str) -> None:
        """Re-key one host after its bookings changed."""
        old = self._keys.get(host_id)
        if old is None:
            return
        new = self._key(self.inventory.hosts[host_id])
        was, now = host_id in self._booked, self.calendar.has_bookings(host_id)
        if new == old and was == now:
            return
        self._keys[host_id] = new
        (self._booked.add if now else self._booked.discard)(host_id)
        for bucket in self._homes[host_id]:
            _move(bucket.keys, old, new)
            if was and now:
                _move(bucket.booked, old, new)
            elif was:
                del bucket.booked[bisect_left(bucket.booked, old)]
            elif now:
                insort(bucket.booked, new)

    def lists_for(self, *, site: str | None, hardware: frozenset[str],
                  devices: frozenset[str]) -> list[_Bucket]:
        """The buckets of every class that offers ``hardware`` and ``devices`` at ``site``."""
        query = (site, hardware, devices)
        found = self._match.get(query)
        if found is None:
            found = [b for (s, (hw, dev, _, _)), b in sorted(self._buckets.items(),
                                                             key=_bucket_order)
                     if s == site and hardware <= hw and devices <= dev]
            self._match[query] = found
        return found

    def candidates(self, need: Resources, *, site: str | None, hardware: frozenset[str],
                   booked: bool = True) -> Iterator[Host]:
        """Hosts that may fit ``need`` in some window: best fit first, then (when ``booked``)
        hosts whose headroom is too small but whose bookings may leave room in the window."""
        devices = frozenset(name for name, _ in need.devices) if need.devices else _NONE
        buckets = [b for b in self.lists_for(site=site, hardware=hardware, devices=devices)
                   if b.max_cpu >= need.cpu_milli and b.max_mem >= need.memory_mib]
        probe = (need.cpu_milli, need.memory_mib, "")
        hosts, mine = self.inventory.hosts, self._booked
        for _, mem, host_id in _ascending([b.keys for b in buckets], probe):
            if mem >= need.memory_mib or (booked and host_id in mine):
                yield hosts[host_id]
        if not booked:
            return
        behind = heapq.merge(*(_walk(b.booked, bisect_left(b.booked, probe) - 1, -1, -1)
                               for b in buckets), reverse=True)
        for _, _, host_id in behind:
            if _static_fit(hosts[host_id].capacity, need):
                yield hosts[host_id]

    def free_hosts(self, need: Resources, window: Window, *, site: str | None = None,
                   hardware_type: str | None = None, limit: int = 10) -> list[Host]:
        """Up to ``limit`` hosts where ``need`` fits over ``window``, best fit first."""
        hardware = frozenset([hardware_type]) if hardware_type else frozenset()
        found = []
        for host in self.candidates(need, site=site, hardware=hardware):
            if self.calendar.fits(host.id, need, window):
                found.append(host)
                if len(found) >= limit:
                    break
        return found

    def largest(self, need: Resources, *, site: str | None, hardware: frozenset[str],
                count: int) -> list[Host]:
        """The ``count`` hosts with most headroom in each matching class (for near misses)."""
        devices = frozenset(name for name, _ in need.devices)
        ids = {k[2] for b in self.lists_for(site=site, hardware=hardware, devices=devices)
               for k in b.keys[-count:]}
        return [self.inventory.hosts[i] for i in sorted(ids)]


def _move(keys: list[_Key], old: _Key, new: _Key) -> None:
    """Replace ``old`` by ``new`` in the sorted ``keys``, shifting only the keys between."""
    i, j = bisect_left(keys, old), bisect_left(keys, new)
    if j <= i:
        keys[j + 1:i + 1] = keys[j:i]
        keys[j] = new
    else:
        keys[i:j - 1] = keys[i + 1:j]
        keys[j - 1] = new


def _bucket_order(item: tuple[tuple[str | None, _Class], _Bucket],
                  ) -> tuple[str, list[str], list[str], int, int]:
    (site, (hw, dev, cpu, mem)), _ = item
    return site or "", sorted(hw), sorted(dev), cpu, mem


def _ascending(lists: list[list[_Key]], probe: _Key) -> Iterator[_Key]:
    """The keys of the sorted ``lists`` from ``probe`` up, merged in order."""
    if len(lists) == 1:
        return islice(lists[0], bisect_left(lists[0], probe), None)
    return _merged(lists, probe)


def _merged(lists: list[list[_Key]], probe: _Key) -> Iterator[_Key]:
    heap = []
    for n, keys in enumerate(lists):
        i = bisect_left(keys, probe)
        if i < len(keys):
            heap.append((keys[i], n, i))
    heapq.heapify(heap)
    while heap:
        key, n, i = heap[0]
        yield key
        keys, i = lists[n], i + 1
        if i < len(keys):
            heapq.heapreplace(heap, (keys[i], n, i))
        else:
            heapq.heappop(heap)


def _walk(keys: list[_Key], start: int, stop: int, step: int) -> Iterator[_Key]:
    for i in range(start, stop, step):
        yield keys[i]


def _static_fit(capacity: Resources, need: Resources) -> bool:
    return capacity.cpu_milli >= need.cpu_milli and capacity.memory_mib >= need.memory_mib


# -- the search -------------------------------------------------------------------------------

_ZERO = Resources()
_NONE: frozenset[str] = frozenset()
_DEFAULT_POLICY = PlacementPolicy()
_STAGES = ("binding", "availability", "site", "hardware_type", "device", "exclusive",
           "one_sliver_per_slice_per_node", "capacity", "uplink")  # the order of the checks


class _Node:
    """One requested node as the search sees it."""

    __slots__ = ("hardware", "index", "links", "name", "need", "neighbors", "request")

    def __init__(self, index: int, request: NodeRequest) -> None:
        self.index, self.request = index, request
        self.hardware = frozenset((request.hardware_type,)) if request.hardware_type else _NONE
        self.need: Resources = request.resources
        self.name: str = request.client_id
        self.links: list[int] = []
        self.neighbors: list[int] = []


@dataclass(slots=True)
class _Link:
    client_id: str
    members: tuple[int, ...]
    capacity: int


@dataclass(slots=True)
class _Overlay:
    resources: Resources
    nodes: list[int]
    exclusive: bool


@dataclass(frozen=True, slots=True)
class _Group:
    need: Resources
    site: str | None
    hardware: frozenset[str]


def _size(node: _Node) -> tuple[int, int, int]:
    return -node.need.cpu_milli, -node.need.memory_mib, node.index


def _fits(cap: Resources, used: Resources, extra: Resources, need: Resources) -> bool:
    if (cap.cpu_milli - used.cpu_milli - extra.cpu_milli < need.cpu_milli
            or cap.memory_mib - used.memory_mib - extra.memory_mib < need.memory_mib
            or cap.disk_gib - used.disk_gib - extra.disk_gib < need.disk_gib
            or cap.bandwidth_mbps - used.bandwidth_mbps - extra.bandwidth_mbps
            < need.bandwidth_mbps):
        return False
    if not need.devices:
        return True
    c, u, x = cap.device_counts, used.device_counts, extra.device_counts
    return all(c.get(d, 0) - u.get(d, 0) - x.get(d, 0) >= k for d, k in need.devices)


def _build(topology: Topology) -> tuple[list[_Node], list[_Link]]:
    nodes = [_Node(i, r) for i, r in enumerate(topology.nodes)]
    if not topology.links:
        return nodes, []
    at = {n.name: n.index for n in nodes}
    node_of = {i.client_id: at[i.node] for i in topology.interfaces}
    links = []
    for k, link in enumerate(topology.links):
        members = tuple(dict.fromkeys([node_of[i] for i in link.interfaces]))
        links.append(_Link(link.client_id, members, link.capacity_mbps or 0))
        for m in members:
            node = nodes[m]
            node.links.append(k)
            for o in members:
                if o != m and o not in node.neighbors:
                    node.neighbors.append(o)
    return nodes, links


def _component(nodes: list[_Node], start: int, free: set[int]) -> list[int]:
    """Breadth-first from ``start`` over links, larger neighbours first."""
    order = [start]
    free.discard(start)
    for current in order:  # grows while it is walked: the queue
        found = [nodes[o] for o in nodes[current].neighbors if o in free]
        if len(found) > 1:
            found.sort(key=_size)
        for other in found:
            free.discard(other.index)
            order.append(other.index)
    return order


def _order(nodes: list[_Node]) -> tuple[list[int], dict[int, list[int]]]:
    """Placement order, and each linked group of unbound nodes by its first node."""
    if len(nodes) == 1:
        return [0], {}
    bound = [n.index for n in nodes if n.request.component_id]
    exclusive = [n.index for n in nodes if n.request.exclusive and n.index not in bound]
    free = {n.index for n in nodes}.difference(bound, exclusive)
    groups = []
    for node in sorted(nodes, key=_size):
        if node.index in free:
            groups.append(_component(nodes, node.index, free))
    if len(groups) > 1:
        groups.sort(key=lambda g: (-sum(nodes[i].need.cpu_milli for i in g), g[0]))
    order = bound + exclusive + [i for g in groups for i in g]
    return order, {g[0]: g for g in groups if len(g) > 1}


class _Search:
    def __init__(self, topology: Topology, index: HostIndex, window: Window, *,
                 slice_id: str, policy: PlacementPolicy) -> None:
        self.index, self.calendar, self.inventory = index, index.calendar, index.inventory
        self.window, self.slice_id, self.policy = window, slice_id, policy
        self.nodes, self.links = _build(topology)
        self.order, self.groups = _order(self.nodes)
        self.assigned: dict[int, Host] = {}
        self.overlay: dict[str, _Overlay] = {}
        self.usage: dict[str, Usage] = {}
        self.group_needs: dict[int, _Group | Literal[False]] = {}  # False: no common site
        self.strict_sites: dict[str, bool] = {}  # site -> one sliver per slice per node
        self.rejected: dict[int, Counter[str]] = {}
        self.uplink_notes: dict[int, tuple[str, str]] = {}
        self.blocked, self.blocked_depth, self.steps = 0, -1, 0
        self.exhausted = False

    def run(self) -> Placement:
        if not self.order or self._search():
            return self._result()
        raise PlacementFailed(_Diagnoser(self).diagnose(),
                              field=f"nodes[{self.nodes[self.blocked].name}]")

    def _search(self) -> bool:
        stack = [self._candidates(self.nodes[self.order[0]])]
        fitted = [0]
        while stack:
            depth = len(stack) - 1
            node = self.nodes[self.order[depth]]
            if node.index in self.assigned:
                self._unassign(node)
            if not self._advance(node, stack[-1], fitted, depth):
                stack.pop()
                fitted.pop()
                continue
            self.steps += 1
            if depth + 1 == len(self.order):
                return True
            if self.steps >= self.policy.max_steps:
                self.exhausted = True
                return False
            stack.append(self._candidates(self.nodes[self.order[depth + 1]]))
            fitted.append(0)
        return False

    def _advance(self, node: _Node, candidates: Iterator[Host], fitted: list[int],
                 depth: int) -> bool:
        """Assign ``node`` to its next fitting candidate; False when there is none left."""
        if fitted[depth] < self.policy.candidates_per_node:
            for host in candidates:
                reason = self._reject(node, host) or self._assign(node, host)
                if reason is None:
                    fitted[depth] += 1
                    return True
                self._note(node, reason)
        if depth >= self.blocked_depth:
            self.blocked, self.blocked_depth = node.index, depth
        return False

    def _candidates(self, node: _Node) -> Iterator[Host]:
        if node.request.component_id:
            yield from self._bound(node)
            return
        seen: set[str] = set()
        if self.policy.colocate:
            for host in self._colocated(node):
                if host.id not in seen:
                    seen.add(host.id)
                    yield host
        for host in self.index.candidates(node.need, site=node.request.site,
                                          hardware=node.hardware):
            if host.id not in seen:
                seen.add(host.id)
                yield host

    def _colocated(self, node: _Node) -> Iterator[Host]:
        """The hosts of the node's placed neighbours, then hosts that could take its group."""
        if node.neighbors:
            yield from self._neighbour_hosts(node)
        group = self._group(node)
        if group is not None:
            yield from islice(self.index.candidates(group.need, site=group.site,
                                                    hardware=group.hardware, booked=False),
                              self.policy.candidates_per_node)

    def _bound(self, node: _Node) -> Iterator[Host]:
        assert node.request.component_id is not None
        try:
            yield self.inventory.resolve(node.request.component_id)
        except NotFound:
            self._note(node, "binding")

    def _note(self, node: _Node, reason: str) -> None:
        counts = self.rejected.get(node.index)
        if counts is None:
            counts = self.rejected[node.index] = Counter()
        counts[reason] += 1

    def _neighbour_hosts(self, node: _Node) -> list[Host]:
        """The hosts of the node's placed neighbours, the most of them first, then by id."""
        assigned = self.assigned
        placed = [assigned[o] for o in node.neighbors if o in assigned]
        if len(placed) <= 1:
            return placed
        counts = Counter(host.id for host in placed)
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        return [self.inventory.hosts[host_id] for host_id, _ in ranked]

    def _group(self, node: _Node) -> _Group | None:
        if node.index not in self.groups:
            return None
        found = self.group_needs.get(node.index)
        if found is None:
            found = self.group_needs[node.index] = self._group_need(node)
        return found or None

    def _group_need(self, node: _Node) -> _Group | Literal[False]:
        members = [self.nodes[i] for i in self.groups[node.index]]
        sites = {m.request.site for m in members} - {None}
        if len(sites) > 1:
            return False
        need = sum((m.need for m in members), _ZERO)
        hardware = frozenset().union(*(m.hardware for m in members))
        return _Group(need, next(iter(sites), None), hardware)

    def usage_of(self, host_id: str) -> Usage:
        usage = self.usage.get(host_id)
        if usage is None:
            usage = self.usage[host_id] = self.calendar.peak(host_id, self.window)
        return usage

    def _reject(self, node: _Node, host: Host) -> str | None:
        """The constraint that keeps ``node`` off ``host`` now, or None."""
        request = node.request
        if not host.available:
            return "availability"
        if request.site and host.site != request.site:
            return "site"
        if not node.hardware <= host.hardware_types:
            return "hardware_type"
        if node.need.devices:
            offered = host.capacity.device_counts
            if any(name not in offered for name, _ in node.need.devices):
                return "device"
        return self._reject_by_use(node, host)

    def _reject_by_use(self, node: _Node, host: Host) -> str | None:
        usage, over = self.usage_of(host.id), self.overlay.get(host.id)
        if usage.exclusive or (over is not None and over.exclusive):
            return "exclusive"
        if node.request.exclusive and (usage.bookings or over is not None):
            return "exclusive"
        if (self.slice_id in usage.slices or over is not None) and self._one_per_slice(host):
            return "one_sliver_per_slice_per_node"
        extra = over.resources if over is not None else _ZERO
        if not _fits(host.capacity, usage.resources, extra, node.need):
            return "capacity"
        return None

    def _one_per_slice(self, host: Host) -> bool:
        strict = self.strict_sites.get(host.site)
        if strict is None:
            strict = self.inventory.site(host.site).one_sliver_per_slice_per_node
            self.strict_sites[host.site] = strict
        return strict

    def _assign(self, node: _Node, host: Host) -> str | None:
        """Put ``node`` on ``host``; undo and return "uplink" if an uplink overflows."""
        self.assigned[node.index] = host
        over = self.overlay.get(host.id)
        if over is None:
            self.overlay[host.id] = _Overlay(node.need, [node.index], node.request.exclusive)
        else:
            over.resources = over.resources + node.need
            over.nodes.append(node.index)
        problem = self._uplink_problem(node) if self._crosses(node, host) else None
        if problem is None:
            return None
        self.uplink_notes[node.index] = problem
        self._unassign(node)
        return "uplink"

    def _crosses(self, node: _Node, host: Host) -> bool:
        """Whether ``node`` on ``host`` adds uplink use: some placed neighbour is elsewhere.
        (If not, no host's uplink demand grew, and every one fitted before.)"""
        for o in node.neighbors:
            other = self.assigned.get(o)
            if other is not None and other.id != host.id:
                return True
        return False

    def _unassign(self, node: _Node) -> None:
        host = self.assigned.pop(node.index)
        over = self.overlay[host.id]
        over.nodes.remove(node.index)
        if not over.nodes:
            del self.overlay[host.id]
        else:
            over.resources = over.resources - node.need

    def uplink_demand(self) -> dict[str, tuple[int, list[str]]]:
        """Per host: the uplink bandwidth its cross-host links need, and those links."""
        demand: dict[str, tuple[int, list[str]]] = {}
        for link in self.links:
            hosts = {self.assigned[m].id for m in link.members if m in self.assigned}
            if len(hosts) > 1:
                for h in sorted(hosts):
                    total, names = demand.get(h, (0, []))
                    demand[h] = (total + link.capacity, [*names, link.client_id])
        return demand

    def _uplink_problem(self, node: _Node) -> tuple[str, str] | None:
        for host_id, (need, names) in self.uplink_demand().items():
            host = self.inventory.hosts[host_id]
            if host.uplink_mbps is None:
                continue
            free = host.uplink_mbps - self.usage_of(host_id).uplink_mbps
            if need > free:
                mine = [self.links[i].client_id for i in node.links]
                subject = next((n for n in names if n in mine), names[0])
                return subject, f"host {host.name}: uplink Mbit/s: needs {need}, has {free}"
        return None

    def _result(self) -> Placement:
        assignments = []
        for node in self.nodes:
            host = self.assigned[node.index]
            booked = host.capacity if node.request.exclusive else node.need
            assignments.append(Assignment(node.name, host.id, booked, node.request.exclusive))
        demand = self.uplink_demand() if self.links else {}
        crossing = {n for _, names in demand.values() for n in names}
        return Placement(self.slice_id, self.window, tuple(assignments),
                         tuple((h, d) for h, (d, _) in sorted(demand.items()) if d),
                         tuple(lk.client_id for lk in self.links if lk.client_id in crossing))


# -- explaining a failure ---------------------------------------------------------------------


def _score(lines: Sequence[str], need: Resources, free: Resources) -> float:
    """How far ``free`` is from ``need``: the sum of relative deficits, for ranking."""
    if not lines:
        return 0.0
    pairs = [(need.cpu_milli, free.cpu_milli), (need.memory_mib, free.memory_mib),
             (need.disk_gib, free.disk_gib), (need.bandwidth_mbps, free.bandwidth_mbps)]
    have = free.device_counts
    pairs += [(k, have.get(d, 0)) for d, k in need.devices]
    return sum(max(0, w - h) / max(w, 1) for w, h in pairs) + 0.001 * len(lines)


class _Diagnoser:
    """Turns the state of a failed search into a :class:`Diagnosis`."""

    def __init__(self, search: _Search) -> None:
        self.s = search
        self.node = search.nodes[search.blocked]
        self.reasons = search.rejected.get(self.node.index, Counter())

    def diagnose(self) -> Diagnosis:
        node = self.node
        if self.reasons.get("binding"):
            return Diagnosis(f"node {node.name!r}", "binding",
                             (f"bound to {node.request.component_id!r}, "
                              "which this aggregate does not have",))
        static = None if node.request.component_id else self._static()
        if static is not None:
            return static
        constraint = self._constraint()
        if constraint == "uplink":
            subject, line = self.s.uplink_notes[node.index]
            return Diagnosis(f"link {subject!r}", "uplink", (line,), self._nearest())
        detail = [f"needs {node.need.describe()}" + (", the whole host"
                                                      if node.request.exclusive else "")]
        if self.s.exhausted:
            detail.append(f"search stopped after {self.s.policy.max_steps} steps")
        return Diagnosis(f"node {node.name!r}", constraint, tuple(detail), self._nearest())

    def _constraint(self) -> str:
        """The constraint met by the candidate that got furthest through the checks."""
        if not self.reasons:
            return "capacity"
        return max(self.reasons, key=_STAGES.index)

    def _static(self) -> Diagnosis | None:
        node, index = self.node, self.s.index
        site, hardware = node.request.site, node.hardware
        devices = frozenset(name for name, _ in node.need.devices)
        if index.lists_for(site=site, hardware=hardware, devices=devices):
            return None
        subject = f"node {node.name!r}"
        if site and not index.lists_for(site=site, hardware=frozenset(), devices=frozenset()):
            return Diagnosis(subject, "site", (f"no available host at site {site!r}",))
        if not index.lists_for(site=site, hardware=hardware, devices=frozenset()):
            return Diagnosis(subject, "hardware_type",
                             (f"no available host of hardware type {node.request.hardware_type!r}"
                              + (f" at site {site!r}" if site else ""),))
        names = ", ".join(sorted(devices))
        return Diagnosis(subject, "device", (f"no available host offers device(s) {names}"
                                             + (f" at site {site!r}" if site else ""),))

    def _nearest(self) -> tuple[Nearest, ...]:
        node, s = self.node, self.s
        if node.request.component_id:
            hosts = [s.inventory.resolve(node.request.component_id)]
        else:
            hosts = s.index.largest(node.need, site=node.request.site, hardware=node.hardware,
                                    count=4 * s.policy.nearest)
        ranked = sorted((self._miss(h) for h in hosts), key=lambda m: (m[0], m[1].host_id))
        return tuple(m for _, m in ranked[: s.policy.nearest])

    def _miss(self, host: Host) -> tuple[float, Nearest]:
        usage = self.s.usage_of(host.id)
        free = self.s.calendar.free(host.id, self.s.window)
        lines = self.node.need.shortfall(free)
        if self.node.request.exclusive and usage.bookings:
            lines.insert(0, "not empty during the window")
        elif usage.exclusive:
            lines.insert(0, "held whole by another lease")
        return _score(lines, self.node.need, free), Nearest(host.id, host.name, tuple(lines))


# -- entry points -----------------------------------------------------------------------------


def place(topology: Topology, hosts: HostIndex | Inventory, calendar: Calendar, window: Window,
          *, slice_id: str, policy: PlacementPolicy | None = None) -> Placement:
    """Map every node of ``topology`` to a host for ``window``; raise PlacementFailed if none.

    ``hosts`` is the index of the current inventory snapshot (an :class:`Inventory` works too
    and is indexed on the spot, which is slower).
    """
    index = hosts if isinstance(hosts, HostIndex) else HostIndex(hosts, calendar, follow=False)
    if index.calendar is not calendar:
        raise InvalidInput("the host index follows another calendar", field="hosts")
    search = _Search(topology, index, window, slice_id=slice_id,
                     policy=policy or _DEFAULT_POLICY)
    return search.run()


def find_slot(topology: Topology, hosts: HostIndex | Inventory, calendar: Calendar, *,
              duration: timedelta, earliest: datetime, horizon: datetime, slice_id: str,
              policy: PlacementPolicy | None = None) -> Placement:
    """The placement in the earliest window of ``duration`` starting by ``horizon``."""
    index = hosts if isinstance(hosts, HostIndex) else HostIndex(hosts, calendar, follow=False)

    def attempt(window: Window) -> Placement | None:
        try:
            return place(topology, index, calendar, window, slice_id=slice_id, policy=policy)
        except PlacementFailed:
            return None

    host_ids = _bound_hosts(topology, index.inventory)
    try:
        _, placement = calendar.find_slot(attempt, duration=duration, earliest=earliest,
                                          horizon=horizon, host_ids=host_ids)
    except InsufficientResources as exc:
        raise _no_window(topology, index, calendar, Window.of(earliest, duration),
                         slice_id=slice_id, policy=policy, why=str(exc)) from None
    return placement


def _no_window(topology: Topology, index: HostIndex, calendar: Calendar, first: Window, *,
               slice_id: str, policy: PlacementPolicy | None, why: str) -> PlacementFailed:
    """No window fits: the diagnosis of the first one (what failed and, per nearest host,
    what it lacks), with ``why`` as its first detail."""
    try:
        place(topology, index, calendar, first, slice_id=slice_id, policy=policy)
    except PlacementFailed as exc:
        d = exc.diagnosis
        return PlacementFailed(Diagnosis(d.subject, d.constraint,
                                         (why, f"at the earliest start {first}:", *d.detail),
                                         d.nearest), field="start")
    return PlacementFailed(Diagnosis("the request", "search", (why,)), field="start")


def _bound_hosts(topology: Topology, inventory: Inventory) -> list[str] | None:
    """The hosts of a fully bound request (only their bookings' ends matter), else None."""
    try:
        ids = [inventory.resolve(n.component_id).id for n in topology.nodes if n.component_id]
    except NotFound:
        return None
    return ids if topology.nodes and len(ids) == len(topology.nodes) else None
