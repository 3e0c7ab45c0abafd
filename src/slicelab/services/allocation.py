"""Allocation (GENI ``Allocate``): a topology or a request RSpec becomes slivers in state
``geni_allocated``, booked as one lease for the window asked for, now or ahead.

The request is a topology (the JSON of :mod:`slicelab.rspec.topology_file`) or a GENI v3
request RSpec, read with :func:`slicelab.rspec.parse_request` against this aggregate's
:class:`~slicelab.rspec.Offer` (its images, container sliver types, hardware type ``pc``).
Anything not offered is refused naming it; a request that does not fit is refused with the
placement's diagnosis (409). For an RSpec the answer includes the manifest RSpec.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from slicelab.domain.calendar import Window
from slicelab.domain.errors import InvalidInput
from slicelab.domain.roles import Caller, Operation, authorize
from slicelab.domain.topology import Topology
from slicelab.rspec import (
    Allocation,
    ImageOffer,
    InterfaceAllocation,
    LinkAllocation,
    Login,
    NodeAllocation,
    Offer,
    build_manifest,
    parse_request,
)
from slicelab.store.aggregate import LinkRow, SliverRow
from slicelab.store.leases import LeaseRow
from slicelab.store.uow import UnitOfWork

from .audit import utcnow
from .booking import Batch, engine_for
from .leases import HARDWARE_TYPES, LeaseWindow, find_slot, lease_window
from .provisioning import AggregateContext
from .topology_apply import ALLOCATED, parse_topology, slice_in, with_defaults, write_topology

__all__ = [
    "HARDWARE_TYPES",
    "Allocated",
    "Slot",
    "aggregate_offer",
    "allocate",
    "earliest_slot",
    "read_request",
]

OP = Operation


def aggregate_offer(ctx: AggregateContext, images: Iterable[str]) -> Offer:
    """What this aggregate offers to RSpecs: containers, its images, hardware type ``pc``."""
    names = sorted(set(images) | {"minimal"})
    offer = Offer.containers(aggregate_urn=f"urn:publicid:IDN+{ctx.authority}+authority+am",
                             images=[ImageOffer(n) for n in names], default_image="minimal",
                             exclusive=True)
    return replace(offer, hardware_types=HARDWARE_TYPES)


@dataclass(frozen=True, slots=True)
class Request:
    topology: Topology
    notes: tuple[str, ...] = ()
    rspec: bool = False


def read_request(data: Any, *, offer: Offer | None) -> Request:
    """A topology from JSON (a dict) or from request RSpec XML (bytes or str)."""
    if isinstance(data, (bytes, str)):
        assert offer is not None, "an RSpec needs this aggregate's offer"
        parsed = parse_request(data, offer=offer)
        topology = replace(parsed.topology,
                           nodes=tuple(with_defaults(n) for n in parsed.topology.nodes))
        return Request(topology, parsed.notes, rspec=True)
    return Request(parse_topology(data))


@dataclass(frozen=True, slots=True)
class Allocated:
    lease: LeaseRow
    slivers: tuple[SliverRow, ...]
    links: tuple[LinkRow, ...]
    manifest: bytes | None = None


def allocate(uow: UnitOfWork, ctx: AggregateContext, caller: Caller, project: str, name: str,
             data: Any, *, when: LeaseWindow, offer: Offer | None = None,
             node_names: dict[str, str] | None = None) -> Allocated:
    """Allocate the request ``data`` in slice ``project/name`` for the window ``when``."""
    request = read_request(data, offer=offer)
    now = utcnow()

    def job(batch: Batch) -> tuple[list[SliverRow], LeaseRow, tuple[LinkRow, ...],
                                   dict[str, str]]:
        # the slice, its project and the caller's rights: read for the whole batch at once
        item = slice_in(batch, caller, OP.SLICE_ALLOCATE, project, name)
        _check_installs(ctx, request)
        window = lease_window(when, now=now, item=item)
        written = write_topology(batch, ctx, item, request.topology, state=ALLOCATED,
                                 window=window, additive=True)
        if written.lease is None:
            raise InvalidInput("the request names no nodes", field="topology")
        hosts = {r.node_id: batch.node_name(r.node_id) for r in written.rows} \
            if request.rspec and node_names is None else {}
        return written.rows, written.lease, written.links, hosts

    # an additive allocation writes only through the batch (book, defer): no savepoint
    rows, lease, links, hosts = engine_for(uow).run_for(uow, job, savepoint=False,
                                                        named=[(project, name)])
    manifest = None
    if request.rspec:
        manifest = build_manifest(request.topology, _allocation(
            ctx, rows, links, node_names or hosts, lease.window, request.notes))
    return Allocated(lease, tuple(rows), links, manifest)


def _check_installs(ctx: AggregateContext, request: Request) -> None:
    """Refuse a file to install that this aggregate cannot give its nodes (else the slivers
    would be allocated and fail only when provisioned)."""
    for node in request.topology.nodes:
        for inst in node.installs:
            if ctx.resolve_image(inst.url) is None:
                what = f"<install url={inst.url!r}>" if request.rspec else \
                    f"install url {inst.url!r}"
                raise InvalidInput(f"{what} of node {node.client_id!r}: file {inst.url!r} is not "
                                   "registered at this aggregate", field="install")


def _allocation(ctx: AggregateContext, rows: Iterable[SliverRow], links: Iterable[LinkRow],
                names: dict[str, str], window: Window, notes: tuple[str, ...]) -> Allocation:
    nodes = tuple(_node_allocation(ctx, r, names) for r in rows)
    link_allocs = tuple(LinkAllocation(lk.client_id, _urn(ctx, "link", lk.id), vni=lk.vni)
                        for lk in links)
    return Allocation(f"urn:publicid:IDN+{ctx.authority}+authority+am", nodes, link_allocs,
                      window.end, notes)


def _urn(ctx: AggregateContext, kind: str, ident: str) -> str:
    return f"urn:publicid:IDN+{ctx.authority}+{kind}+{ident}"


def _node_allocation(ctx: AggregateContext, row: SliverRow,
                     names: dict[str, str]) -> NodeAllocation:
    plan = row.plan
    ifaces = tuple(InterfaceAllocation(f"{row.client_id}:{i['ifname']}",
                                       _urn(ctx, "interface", f"{row.id}.{i['ifname']}"),
                                       i["mac"], i.get("ipv4"))
                   for i in plan.get("interfaces", ()))
    logins = (Login("root", row.ssh_host, row.ssh_port),) if row.ssh_host and row.ssh_port \
        else ()
    host = names.get(row.node_id, row.node_id)
    return NodeAllocation(row.client_id, str(plan["urn"]), _urn(ctx, "node", host),
                          str(plan["hostname"]), logins, interfaces=ifaces)


@dataclass(frozen=True, slots=True)
class Slot:
    window: Window
    hosts: tuple[tuple[str, str], ...]  # (client_id, host name)


def earliest_slot(uow: UnitOfWork, caller: Caller, data: Any, *, duration: timedelta,
                  after: datetime | None = None, horizon: timedelta = timedelta(days=30),
                  offer: Offer | None = None) -> Slot:
    """The earliest window of ``duration`` (from ``after``, else now) where the request fits,
    starting within ``horizon``; raise the diagnosis of the first window when none does."""
    authorize(OP.RESOURCES_READ, caller)
    request = read_request(data, offer=offer)
    now = utcnow()
    earliest = max(after or now, now)
    if duration <= timedelta(0):
        raise InvalidInput("the duration must be positive", field="duration")
    placement = find_slot(uow, request.topology, duration=duration, earliest=earliest,
                          horizon=earliest + horizon)
    return Slot(placement.window, tuple((a.node, a.host_id) for a in placement.assignments))
