"""Slice apply: a topology becomes slivers and links on nodes (placed and booked as a lease
by :mod:`slicelab.services.leases`, provisioned and started at once); slice release tears
them down and ends the slice's leases; slice status reads them back; exec queues a command
for a sliver's node.

Apply is declarative. A sliver whose request is unchanged keeps its id, node and ports; a link
whose request is unchanged keeps its VNI and addresses; everything else is made anew, and what
the topology no longer names is removed (its nodes' desired state no longer holds it).

The topology is the JSON (or YAML) of :func:`slicelab.rspec.topology_file.topology_from_json`,
for example ``{"nodes": [{"name": "n1", "cores": 1, "memory": 256}, {"name": "n2"}],
"links": [{"name": "l1", "members": ["n1:10.10.1.1/24", "n2"], "capacity": 100}]}``. A node
that names no cores, memory, disk or image gets 1 core, 256 MiB, 1 GiB and ``minimal``.
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

from slicelab.domain.addressing import (
    VNI_FIRST,
    VNI_LAST,
    SubnetsInUse,
    allocate_ports,
    allocate_vni,
    assign_link_addresses,
    fresh_link_addresses,
    mac_address,
)
from slicelab.domain.calendar import Window
from slicelab.domain.desired import InstallPlan, SliverInterface, SliverPlan, sliver_hostname
from slicelab.domain.errors import Conflict, InvalidInput, NotFound, PermissionDenied
from slicelab.domain.projects import Project
from slicelab.domain.resources import Resources
from slicelab.domain.roles import (
    SLICE_READS,
    Caller,
    Operation,
    Role,
    Scope,
    Target,
    authorize,
    roles_of,
)
from slicelab.domain.slices import Slice
from slicelab.domain.slivers import (
    AllocationEvent,
    AllocationState,
    OperationalEvent,
    SliverState,
)
from slicelab.domain.topology import LinkRequest, NodeRequest, Topology
from slicelab.domain.urn import urn_text
from slicelab.rspec.topology_file import topology_from_json
from slicelab.services.ids import new_id
from slicelab.store.aggregate import CommandRow, LinkRow, SliverRow
from slicelab.store.leases import LeaseRow
from slicelab.store.uow import UnitOfWork

from .audit import utcnow
from .booking import LINKS, PORTS, Batch, TakenPorts, engine_for
from .inventory import index_nodes
from .leases import LeaseWindow, lease_window
from .provisioning import AggregateContext, plan_from_row, refresh_desired

__all__ = [
    "ALLOCATED",
    "DEFAULT_IMAGE",
    "SliverStatus",
    "apply_topology",
    "parse_topology",
    "queue_exec",
    "release_slice",
    "slice_for",
    "slice_in",
    "slice_status",
    "Written",
    "with_defaults",
    "write_topology",
]

DEFAULT_IMAGE = "minimal"
DEFAULT_CPU_MILLI = 1000
DEFAULT_MEMORY_MIB = 256
DEFAULT_DISK_GIB = 1
MAX_EXEC_TIMEOUT = 600.0
OP = Operation


# -- the topology JSON ----------------------------------------------------------------------

def with_defaults(node: NodeRequest) -> NodeRequest:
    r = node.resources
    if r.cpu_milli and r.memory_mib and r.disk_gib and node.image:
        return node
    resources = Resources(r.cpu_milli or DEFAULT_CPU_MILLI, r.memory_mib or DEFAULT_MEMORY_MIB,
                          r.disk_gib or DEFAULT_DISK_GIB, r.bandwidth_mbps, r.devices)
    return replace(node, resources=resources, image=node.image or DEFAULT_IMAGE)


def parse_topology(data: Any) -> Topology:
    """The topology JSON (see :mod:`slicelab.rspec.topology_file`), with defaults filled in."""
    return topology_from_json(data, defaults=with_defaults)


def _request_json(node: NodeRequest) -> dict[str, Any]:
    r = node.resources
    return {"cores": r.cores, "memory_mib": r.memory_mib, "disk_gib": r.disk_gib,
            "devices": [n for n, _ in r.devices], "image": node.image,
            "exclusive": node.exclusive, "component_id": node.component_id, "site": node.site}


def _link_json(topology: Topology, link: LinkRequest) -> dict[str, Any]:
    ifaces = [topology.interface(i) for i in link.interfaces]
    return {"nodes": [i.node for i in ifaces], "addresses": [i.ipv4 for i in ifaces],
            "capacity_mbps": link.capacity_mbps}


# -- access ---------------------------------------------------------------------------------

def slice_for(uow: UnitOfWork, caller: Caller, op: Operation, project: str,
              name: str) -> Slice:
    return _access(caller, op, uow.projects.find(project), project, name,
                   lambda: uow.slices.find(project, name))


def slice_in(batch: Batch, caller: Caller, op: Operation, project: str, name: str) -> Slice:
    """:func:`slice_for` inside an allocation engine's batch, from what it read for all its
    jobs at once (submit the job with ``named=[(project, name)]``)."""
    return _access(caller, op, batch.project_named(project), project, name,
                   lambda: batch.slice_named(project, name))


def _access(caller: Caller, op: Operation, found: Project | None, project: str, name: str,
            read: Callable[[], Slice | None]) -> Slice:
    if found is None:
        raise NotFound(f"no project {project!r}", field="project")
    target = Target(project=found)
    authorize(op, caller, target)
    item = read()
    if item is None:
        raise NotFound(f"no slice {name!r} in project {project!r}", field="slice")
    roles = roles_of(caller, Scope.PROJECT, target.project)
    if op not in SLICE_READS and not roles & {Role.ADMIN, Role.PI} \
            and caller.name not in item.members:
        raise PermissionDenied(f"{op.value}: {caller.name!r} is not a member of slice "
                               f"{project}/{name}")
    return item


# -- apply ----------------------------------------------------------------------------------

@dataclass(slots=True)
class _Plan:
    """The working state of one apply."""

    slice: Slice
    topology: Topology
    keep: dict[str, SliverRow]
    drop: list[SliverRow]
    placement: dict[str, str]
    ids: dict[str, str] = field(default_factory=dict)
    lease: LeaseRow | None = None
    expires: dict[str, datetime] = field(default_factory=dict)
    state: SliverState = field(default_factory=SliverState)
    hostnames: dict[str, str] = field(default_factory=dict)
    manifest_rest: str = ""  # the manifests' JSON after the client id (see _manifest)


def _split(existing: list[SliverRow], topology: Topology) -> tuple[dict[str, SliverRow],
                                                                    list[SliverRow]]:
    if not existing:
        return {}, []
    wanted = {n.client_id: _request_json(n) for n in topology.nodes}
    keep = {r.client_id: r for r in existing if wanted.get(r.client_id) == r.request}
    return keep, [r for r in existing if r.client_id not in keep]


def _fresh_topology(topology: Topology, keep: Mapping[str, SliverRow]) -> Topology:
    """The nodes still to place, with the links (and interfaces) among them alone."""
    if not keep:
        return topology
    nodes = tuple(n for n in topology.nodes if n.client_id not in keep)
    names = {n.client_id for n in nodes}
    ifaces = tuple(i for i in topology.interfaces if i.node in names)
    kept = {i.client_id for i in ifaces}
    links = tuple(lk for lk in topology.links if set(lk.interfaces) <= kept)
    used = {i for lk in links for i in lk.interfaces}
    return Topology(nodes=nodes, interfaces=tuple(i for i in ifaces if i.client_id in used),
                    links=links)


def _apply_window(uow: UnitOfWork, item: Slice, now: datetime) -> Window:
    """New slivers of an apply join the slice's current lease: from now to its end."""
    ends = [lease.window.end for lease in uow.leases.leases.of_slice(_sid(item))
            if lease.window.end > now]
    return lease_window(LeaseWindow(end=max(ends) if ends else None), now=now, item=item)


def _place(batch: Batch, plan: _Plan, *, window: Window | None,
           provision: bool = True) -> dict[str, str]:
    """Book the nodes not kept as one new lease; map every node to its host."""
    fresh = _fresh_topology(plan.topology, plan.keep)
    placed: dict[str, str] = {c: r.node_id for c, r in plan.keep.items()}
    if fresh.nodes:
        window = window or _apply_window(batch.uow, plan.slice, batch.now)
        lease, placement = batch.book(plan.slice, fresh, window, sliver_ids=plan.ids,
                                      provision=provision)
        plan.lease = lease
        placed.update({a.node: a.host_id for a in placement.assignments})
        plan.expires.update({n.client_id: lease.window.end for n in fresh.nodes})
    return placed


@dataclass(slots=True)
class _Taken:
    """VNIs and subnets of every slice's links, read under the booking lock (which every
    writer of links holds too, see the change log), kept by the engine across batches and
    current by its jobs until another writer adds or removes a link; the subnets also merged
    into address ranges, which allocation searches fast."""

    vnis: dict[int, int]  # vni -> slice id
    subnets: dict[ipaddress.IPv4Network, int]
    merged: SubnetsInUse
    low: int = VNI_FIRST  # no VNI below it is free (none is freed while this is kept)
    owners: dict[int, int] = field(default_factory=dict)  # slice id -> VNIs it holds

    def __post_init__(self) -> None:
        for owner in self.vnis.values():
            self.owners[owner] = self.owners.get(owner, 0) + 1

    def _own(self, vni: int, owner: int | None) -> None:
        before = self.vnis.pop(vni, None)
        if before is not None:
            self.owners[before] -= 1
            if not self.owners[before]:
                del self.owners[before]
        if owner is not None:
            self.vnis[vni] = owner
            self.owners[owner] = self.owners.get(owner, 0) + 1

    def vni(self, used: Collection[int], *, everyone: bool) -> int:
        """The lowest VNI not in ``used`` (:func:`allocate_vni`'s rule), searched from
        :attr:`low` when ``used`` holds every slice's VNIs."""
        vni = self.low if everyone else VNI_FIRST
        while vni in used:
            vni += 1
        if vni > VNI_LAST:
            return allocate_vni(used)  # refuses, naming the range
        if everyone:
            self.low = vni
        return vni

    def add(self, link: LinkRow, net: ipaddress.IPv4Network | None = None) -> None:
        """Keep ``link`` (``net``: its subnet, when the caller has it parsed already)."""
        net = net or ipaddress.IPv4Network(link.subnet)
        self._own(link.vni, link.slice_id)
        self.subnets[net] = link.slice_id
        self.merged.add(net)

    def remove(self, link: LinkRow) -> None:
        """Take back a link :meth:`add` kept (its job failed)."""
        net = ipaddress.IPv4Network(link.subnet)
        if self.vnis.get(link.vni) == link.slice_id:
            self._own(link.vni, None)
            self.low = min(self.low, link.vni)
        if self.subnets.get(net) == link.slice_id:
            del self.subnets[net]
            self.merged = SubnetsInUse(self.subnets)

    def owns_any(self, slice_id: int) -> bool:
        return slice_id in self.owners


def _taken(batch: Batch) -> _Taken:
    found = batch.kept.get(LINKS)
    if not isinstance(found, _Taken):
        rows = batch.uow.aggregate.links.used()
        subnets = {ipaddress.IPv4Network(subnet): owner for owner, _, subnet in rows}
        found = batch.kept[LINKS] = _Taken(
            {vni: owner for owner, vni, _ in rows}, subnets, SubnetsInUse(subnets))
    return found


def _links(batch: Batch, plan: _Plan, existing: list[LinkRow]) -> list[LinkRow]:
    """Keep unchanged links; allocate VNIs and addresses for the rest."""
    taken, sid = _taken(batch), _sid(plan.slice)
    old = {lk.client_id: lk for lk in existing}
    if not plan.topology.links:
        return []
    everyone = not taken.owns_any(sid)
    requests = [(link, _link_json(plan.topology, link)) for link in plan.topology.links]
    kept = {link.client_id: old[link.client_id] for link, request in requests
            if _unchanged(old.get(link.client_id), request)}
    mine = list(kept.values())  # the slice's links that stay: never reuse their VNI or subnet
    result = []
    for link, request in requests:
        row, net = kept.get(link.client_id), None
        if row is None:
            row, net = _new_link(plan, link, request, taken, everyone=everyone, mine=mine)
            mine.append(row)
            batch.on_undo(lambda new=row: taken.remove(new))  # type: ignore[misc]
        result.append(row)
        taken.add(row, net)
    return result


def _unchanged(kept: LinkRow | None, request: dict[str, Any]) -> bool:
    return kept is not None and {k: v for k, v in kept.request.items() if k != "assigned"} \
        == request


def _new_link(plan: _Plan, link: LinkRequest, request: dict[str, Any], taken: _Taken, *,
              everyone: bool, mine: list[LinkRow]) -> tuple[LinkRow, ipaddress.IPv4Network]:
    sid = _sid(plan.slice)
    subnets: SubnetsInUse | list[ipaddress.IPv4Network]
    if everyone:
        vnis: Collection[int] = taken.vnis
        subnets = taken.merged
    else:
        vnis = {v for v, owner in taken.vnis.items() if owner != sid} | {lk.vni for lk in mine}
        subnets = [n for n, owner in taken.subnets.items() if owner != sid] + [
            ipaddress.IPv4Network(lk.subnet) for lk in mine]
    net, assigned = _addresses(link.client_id, request["addresses"], subnets)
    return LinkRow(id=new_id("l-"), slice_id=sid,
                   client_id=link.client_id, vni=taken.vni(vnis, everyone=everyone),
                   subnet=str(net), capacity_mbps=link.capacity_mbps,
                   request={**request, "assigned": assigned}, sliver_ids=()), net


def _addresses(link: str, requested: list[str | None],
               subnets: SubnetsInUse | list[ipaddress.IPv4Network]
               ) -> tuple[ipaddress.IPv4Network, list[str]]:
    """The link's subnet and an address per interface (a fresh subnet when none is named)."""
    if not any(requested):
        return fresh_link_addresses(link, len(requested), subnets)
    addresses = assign_link_addresses(link, requested, subnets)
    return addresses[0].network, [str(a) for a in addresses]


def _sid(item: Slice) -> int:
    assert item.id is not None, "a stored slice has an id"
    return item.id


def _interfaces(links: list[LinkRow], ids: Mapping[str, str]) -> dict[str, list[SliverInterface]]:
    per_node: dict[str, list[SliverInterface]] = {c: [] for c in ids}
    for link in sorted(links, key=lambda lk: lk.client_id):
        for node, ipv4 in zip(link.request["nodes"], link.request["assigned"], strict=True):
            ifaces = per_node[node]
            ifaces.append(SliverInterface(link.id, f"eth{len(ifaces) + 1}", ipv4,
                                          mac_address(ids[node], link.id), link.capacity_mbps))
    return per_node


def _ports(batch: Batch, plan: _Plan) -> dict[str, int]:
    """A block of control ports per new sliver, free on its host. What every host has taken
    is read once and kept by the engine (a host another writer changed, as every writer of
    slivers changes its bookings, is read again)."""
    drop = {r.id for r in plan.drop}
    kept = batch.kept.setdefault(PORTS, TakenPorts())
    hosts = {plan.placement[n.client_id] for n in plan.topology.nodes
             if n.client_id not in plan.keep}
    if not kept.loaded and not drop:
        kept.read(None, _ports_on(batch, None, drop))
    wanted = hosts if drop else kept.to_read(hosts)
    if wanted:
        kept.read(wanted, _ports_on(batch, wanted, drop))
        if drop:  # read without the slivers dropped, which a failed job keeps: read again
            batch.on_undo(lambda: _forget(kept, wanted))
    ports = {c: r.plan["control"]["first_port"] for c, r in plan.keep.items()}
    for node in plan.topology.nodes:
        if node.client_id not in ports:
            taken = kept.on(plan.placement[node.client_id])
            port = allocate_ports(taken)
            taken.add(port)
            ports[node.client_id] = port
            batch.on_undo(lambda taken=taken, port=port: taken.discard(port))  # type: ignore[misc]
    return ports


def _forget(kept: TakenPorts, hosts: set[str]) -> None:
    for host in hosts:
        kept.forget(host)


def _ports_on(batch: Batch, hosts: set[str] | None, drop: set[str]) -> list[tuple[str, int]]:
    found = batch.uow.aggregate.slivers.ports_on(hosts, utcnow())
    return [(node_id, port) for sliver_id, node_id, port in found if sliver_id not in drop]


def _ssh_keys(batch: Batch, item: Slice) -> tuple[str, ...]:
    """The slice members' public keys (each member's read once per batch)."""
    keys: list[str] = []
    for member in sorted(item.members):
        memo = f"keys:{member}"
        if memo not in batch.memo:
            found = batch.uow.keys.list(member, limit=10_000, offset=0).items
            batch.memo[memo] = [k.public_key for k in found]
        keys += batch.memo[memo]
    return tuple(keys)


def _sliver_plan(ctx: AggregateContext, plan: _Plan, node: NodeRequest, *, sliver_id: str,
                 first_port: int, keys: tuple[str, ...],
                 interfaces: list[SliverInterface]) -> SliverPlan:
    item = plan.slice
    r = node.resources
    return SliverPlan(
        sliver_id=sliver_id, node_id=plan.placement[node.client_id],
        urn=urn_text(ctx.authority, "sliver", sliver_id), slice_urn=str(item.urn),
        project=item.project, slice=item.name, client_id=node.client_id,
        hostname=plan.hostnames[node.client_id],
        image=node.image or DEFAULT_IMAGE, cores=r.cores, memory_mib=r.memory_mib,
        disk_gib=r.disk_gib, first_port=first_port, port_count=10, ssh_keys=keys,
        manifest=_manifest(plan, node.client_id), interfaces=tuple(interfaces),
        installs=tuple(InstallPlan(i.url, i.path) for i in node.installs))


def _manifest(plan: _Plan, client_id: str) -> str:
    """What the sliver learns about its slice (written to /etc/slicelab/manifest): the JSON of
    ``{"client_id", "nodes" (sorted), "slice"}``, the part after the client id made once per
    plan."""
    if not plan.manifest_rest:
        nodes = sorted(n.client_id for n in plan.topology.nodes)
        plan.manifest_rest = (f', "nodes": {json.dumps(nodes)}, '
                              f'"slice": {json.dumps(str(plan.slice.urn))}}}')
    return f'{{"client_id": {json.dumps(client_id)}{plan.manifest_rest}'


_STARTED = SliverState().on(AllocationEvent.ALLOCATE).on(AllocationEvent.PROVISION) \
    .operate(OperationalEvent.START)
ALLOCATED = SliverState().on(AllocationEvent.ALLOCATE)


def _new_ids(plan: _Plan) -> dict[str, str]:
    ids = {c: r.id for c, r in plan.keep.items()}
    ids.update({n.client_id: new_id("s-") for n in plan.topology.nodes
                if n.client_id not in ids})
    return ids


def _write_slivers(batch: Batch, ctx: AggregateContext, plan: _Plan,
                   links: list[LinkRow], *, defer: bool) -> list[SliverRow]:
    uow, ids = batch.uow, plan.ids
    ifaces, ports, keys = _interfaces(links, ids), _ports(batch, plan), _ssh_keys(batch, plan.slice)
    rows, added = [], []
    for node in plan.topology.nodes:
        cid = node.client_id
        sp = _sliver_plan(ctx, plan, node, sliver_id=ids[cid], first_port=ports[cid], keys=keys,
                          interfaces=ifaces[cid])
        pj = sp.to_json()
        if cid in plan.keep:
            old = plan.keep[cid].plan
            pj.update(run=old["run"], restart_seq=old["restart_seq"])
            if "expires" in old:
                pj["expires"] = old["expires"]
            rows.append(replace(plan.keep[cid], plan=pj))
            uow.aggregate.slivers.save(rows[-1])
            continue
        pj["expires"] = plan.expires[cid].isoformat()
        if plan.state.allocation is not AllocationState.PROVISIONED:
            pj["run"] = "stopped"
        rows.append(SliverRow(ids[cid], _sid(plan.slice), plan.slice.project, plan.slice.name,
                              sp.node_id, cid, _request_json(node), pj,
                              plan.state.allocation.value, plan.state.operational.value))
        added.append(rows[-1])
    if defer:
        batch.defer(added)
    else:
        uow.aggregate.slivers.add_many(added, created=utcnow())
    return rows


def _write_links(batch: Batch, existing: list[LinkRow], links: list[LinkRow],
                 ids: Mapping[str, str], *, defer: bool) -> list[LinkRow]:
    """Write ``links`` (dropping the slice's other links); return them as written."""
    uow, old = batch.uow, {lk.id for lk in existing}
    uow.aggregate.links.delete(old - {lk.id for lk in links})
    rows = [replace(link, sliver_ids=tuple(ids[n] for n in link.request["nodes"]))
            for link in links]
    for row in rows:
        if row.id in old:
            uow.aggregate.links.save(row)
    new = [r for r in rows if r.id not in old]
    if defer:
        batch.defer(new)
    else:
        uow.aggregate.links.add_many(new)
    return rows


@dataclass(frozen=True, slots=True)
class Written:
    """What :func:`write_topology` wrote: the slice's slivers, the nodes whose desired state
    may change, and the new lease (None when every node was kept)."""

    rows: list[SliverRow]
    touched: set[str]
    lease: LeaseRow | None
    links: tuple[LinkRow, ...] = ()


def write_topology(batch: Batch, ctx: AggregateContext, item: Slice, topology: Topology,
                   *, state: SliverState, window: Window | None = None,
                   additive: bool = False) -> Written:
    """Book and write ``topology`` for slice ``item`` in an allocation engine's batch.

    Declarative unless ``additive`` (then the slice must hold none of its nodes yet and keeps
    what it has; its rows are then written when the batch commits, see :meth:`Batch.defer`).
    New slivers are written in ``state``. The engine rewrites the free-node index of every
    host whose bookings changed.
    """
    uow = batch.uow
    hostnames = {n.client_id: sliver_hostname(n.client_id, item.name, item.project, ctx.domain)
                 for n in topology.nodes}
    existing = batch.slivers_of(_sid(item))
    if additive and existing:
        raise Conflict(f"slice {item.project}/{item.name} holds slivers already "
                       f"({', '.join(r.client_id for r in existing)}); delete them first or "
                       "use slice apply", field="slice")
    keep, drop = _split(existing, topology)
    plan = _Plan(item, topology, keep, drop, {}, state=state, hostnames=hostnames)
    plan.ids = _new_ids(plan)
    if drop:
        uow.leases.leases.release_slivers([r.id for r in drop])
        batch.note_changes()
    plan.placement = _place(batch, plan, window=window,
                            provision=state.allocation is AllocationState.PROVISIONED)
    old_links = uow.aggregate.links.of_slice(_sid(item)) if existing else []
    links = _links(batch, plan, old_links)
    uow.aggregate.slivers.delete([r.id for r in drop])
    uow.aggregate.links.delete([lk.id for lk in old_links
                                if lk.id not in {x.id for x in links}])
    rows = _write_slivers(batch, ctx, plan, links, defer=additive)
    written = _write_links(batch, old_links, links, {r.client_id: r.id for r in rows},
                           defer=additive)
    touched = {r.node_id for r in existing} | {r.node_id for r in rows}
    return Written(rows, touched, plan.lease,
                   tuple(sorted(written, key=lambda lk: lk.client_id)))


def apply_topology(uow: UnitOfWork, ctx: AggregateContext, caller: Caller, project: str,
                   name: str, data: Any) -> list[SliverRow]:
    """Make slice ``project/name`` hold exactly the topology ``data``; return its slivers.

    New slivers are allocated, provisioned and started at once, in a lease from now to the end
    of the slice's current lease (or to the slice's expiry). The allocation engine
    (:mod:`slicelab.services.booking`) writes it.
    """
    item = slice_for(uow, caller, OP.SLICE_APPLY, project, name)
    topology = parse_topology(data)

    def job(batch: Batch) -> tuple[list[SliverRow], list[str]]:
        written = write_topology(batch, ctx, item, topology, state=_STARTED)
        return written.rows, refresh_desired(batch.uow, ctx, written.touched)

    rows, changed = engine_for(uow).run_for(uow, job, slices=[_sid(item)])
    ctx.notify(changed)
    return rows


def release_slice(uow: UnitOfWork, ctx: AggregateContext, caller: Caller, project: str,
                  name: str) -> None:
    """Remove every sliver and link of the slice and end its leases; their nodes then tear
    them down."""
    item = slice_for(uow, caller, OP.SLICE_APPLY, project, name)
    uow.leases.changes.lock()
    existing = uow.aggregate.slivers.of_slice(_sid(item))
    uow.leases.leases.release_slivers([r.id for r in existing])
    for lease in uow.leases.leases.of_slice(_sid(item)):
        uow.leases.leases.end(lease.id)
    uow.aggregate.links.delete([lk.id for lk in uow.aggregate.links.of_slice(_sid(item))])
    uow.aggregate.slivers.delete([r.id for r in existing])
    changed = refresh_desired(uow, ctx, {r.node_id for r in existing})
    index_nodes(uow, {r.node_id for r in existing})
    uow.commit()
    ctx.notify(changed)


# -- status and exec ------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SliverStatus:
    client_id: str
    sliver_id: str
    urn: str
    node: str
    hostname: str
    allocation_state: str
    operational_state: str
    state: str | None
    error: str | None
    addresses: tuple[str, ...]
    ssh_host: str | None
    ssh_port: int | None
    expires: str | None = None  # the end of the sliver's lease (ISO 8601)

    @property
    def ssh_command(self) -> str | None:
        if self.ssh_host is None or self.ssh_port is None:
            return None
        return f"ssh -p {self.ssh_port} root@{self.ssh_host}"


def slice_status(uow: UnitOfWork, caller: Caller, project: str,
                 name: str) -> list[SliverStatus]:
    item = slice_for(uow, caller, OP.SLICE_STATUS, project, name)
    rows = uow.aggregate.slivers.of_slice(_sid(item))
    names = {n.id: n.name for n in uow.aggregate.nodes.by_ids({r.node_id for r in rows})}
    result = []
    for row in rows:
        plan = plan_from_row(row)
        result.append(SliverStatus(
            row.client_id, row.id, plan.urn, names.get(row.node_id, row.node_id), plan.hostname,
            row.allocation_state, row.operational_state, row.reported_state, row.error,
            tuple(i.ipv4 for i in plan.interfaces if i.ipv4), row.ssh_host, row.ssh_port,
            row.plan.get("expires")))
    return result


def queue_exec(uow: UnitOfWork, ctx: AggregateContext, caller: Caller, project: str, name: str,
               client_id: str, *, argv: Sequence[str], timeout: float) -> CommandRow:
    """Put a command for sliver ``client_id`` into its node's desired state."""
    item = slice_for(uow, caller, OP.SLIVER_EXEC, project, name)
    if not argv or not all(isinstance(a, str) for a in argv):
        raise InvalidInput("argv must be a non-empty list of strings", field="argv")
    if not 0 < timeout <= MAX_EXEC_TIMEOUT:
        raise InvalidInput(f"timeout must be in (0, {MAX_EXEC_TIMEOUT:g}] s", field="timeout")
    row = next((r for r in uow.aggregate.slivers.of_slice(_sid(item))
                if r.client_id == client_id), None)
    if row is None:
        raise NotFound(f"slice {project}/{name} has no node {client_id!r}", field="client_id")
    command = CommandRow(new_id("c-"), row.node_id, row.id, tuple(argv), timeout)
    uow.aggregate.commands.add(command, created=utcnow())
    changed = refresh_desired(uow, ctx, [row.node_id])
    uow.commit()
    ctx.notify(changed)
    return command
