"""Two-member links on one host: a veth pair straight between the two slivers' namespaces.

A link with exactly two local members and no remote hosts needs no bridge: one veth pair,
an end in each sliver's namespace under the interface name the sliver asked for, shaped by
a tbf on each end (each shapes its own direction). It dies with either namespace, so
removing a sliver costs nothing for its links, and no bridge has to be deleted (the kernel
waits for an RCU grace period for every bridge it deletes, even in one batch).

Ledger: the link's owner holds a ``pair`` record (the link's members and capacity) from
:meth:`Pairs.declare`, and, once both members' namespaces exist, a ``link`` record for the
pair (name and ifindex of the first member's end, inside its namespace) with ``qdisc``
children. Each member's ``netns`` record lists its ends on such links in ``data["direct"]``
(interface name, MAC, IPv4, capacity), so whoever makes the pair can configure both ends.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from slicelab.agent.ledger import Ledger, Record, Remover
from slicelab.agent.net import names, namespaces
from slicelab.agent.net.batch import Batch, Peer
from slicelab.agent.net.netlink import Netlink
from slicelab.agent.runtime.errors import KernelError
from slicelab.agent.spec import InterfaceSpec, LinkSpec

__all__ = ["PAIR", "TUNNEL", "End", "Pairs", "Planned", "by_namespace", "end_data", "kind_of"]

PAIR = "pair"  # ledger kind of a pair link's marker record
TUNNEL = "tunnel"  # ledger kind of a tunnel link's marker record


def kind_of(spec: LinkSpec) -> str:
    """``pair``: two local members, no remote host (a veth pair between them);
    ``tunnel``: one local member and remote hosts (a VXLAN device inside the member's
    namespace, its UDP socket in the host's); ``bridge`` otherwise."""
    members = len(set(spec.members))
    if not spec.remotes and members == 2:
        return PAIR
    if spec.remotes and members == 1:
        return TUNNEL
    return "bridge"


def end_data(iface: InterfaceSpec, marker: Record) -> dict[str, Any]:
    """What the sliver's ``netns`` record keeps about its end of a pair link."""
    return {
        "link_id": iface.link_id,
        "ifname": iface.ifname,
        "mac": iface.mac,
        "ipv4": iface.ipv4,
        "capacity": iface.capacity_mbps or marker.data.get("capacity"),
    }


@dataclass(frozen=True)
class End:
    """One end of a pair link: its sliver's namespace and what that sliver asked for."""

    ns: str
    data: Mapping[str, Any]


@dataclass
class Planned:
    """A pair link about to be made: its records (begun) and its two ends."""

    link: Record
    qdiscs: list[Record]
    ends: tuple[End, End]

    def records(self) -> list[Record]:
        return [self.link, *self.qdiscs]


class Pairs:
    """Declares pair links and makes their veth pairs, recorded in ``ledger``."""

    def __init__(
        self,
        *,
        ledger: Ledger,
        net: Netlink,
        prefix: str,
        mtu: int,
        removers: Mapping[str, Remover],
    ) -> None:
        self.ledger, self.net, self.prefix, self.mtu = ledger, net, prefix, mtu
        self._removers = removers

    def declare(self, spec: LinkSpec) -> None:
        """Record the link as a pair or tunnel link (nothing is made yet)."""
        data = {
            "members": sorted(set(spec.members)),
            "capacity": spec.capacity_mbps,
            "vni": spec.vni,
            "local_ip": spec.local_ip,
            "remotes": list(spec.remotes),
        }
        self.ledger.finish(
            self.ledger.begin(f"link:{spec.link_id}", kind_of(spec), spec.link_id, data=data)
        )

    def member(self, link_id: str, sliver_id: str, *, kind: str = PAIR) -> Record | None:
        """The link's marker if it is a ``kind`` link with ``sliver_id`` as a member."""
        marker = self.marker(link_id, kind=kind)
        return marker if marker and sliver_id in marker.data["members"] else None

    def marker(self, link_id: str, *, kind: str = PAIR) -> Record | None:
        return self.ledger.find(f"link:{link_id}", kind, link_id)

    def connect(
        self,
        link_ids: Sequence[str],
        *,
        fresh: bool,
        sockets: Mapping[str, socket.socket] | None = None,
    ) -> None:
        """Make the veth pair of each link whose two members' namespaces exist.

        ``fresh``: a member was just (re)built, so a recorded pair is gone with its old
        namespace; otherwise a recorded pair that still exists is kept. ``sockets``: route
        sockets already open inside namespaces, by name (others are opened here).
        """
        planned = self.plan(link_ids, fresh=fresh)
        given = dict(sockets or {})
        opened: dict[str, socket.socket] = {}
        try:
            for end in (end for item in planned for end in item.ends):
                if end.ns not in given and end.ns not in opened:
                    opened[end.ns] = namespaces.run_in(end.ns, namespaces.route_socket)
            self.make(planned, {**given, **opened})
        finally:
            for sock in opened.values():
                sock.close()
        with self.ledger.transaction():
            for item in planned:
                for record in item.records():
                    self.ledger.finish(record)

    def plan(
        self, link_ids: Sequence[str], *, fresh: bool, building: Collection[str] = ()
    ) -> list[Planned]:
        """Begin the records of each pair link to make (one transaction): those whose two
        members' namespaces exist, or are in ``building`` (namespaces about to be made)."""
        todo = [
            link_id for link_id in dict.fromkeys(link_ids) if self._needs_pair(link_id, fresh=fresh)
        ]
        with self.ledger.transaction():
            return [p for p in (self._plan(link_id, building) for link_id in todo) if p]

    def make(self, planned: Sequence[Planned], sockets: Mapping[str, socket.socket]) -> None:
        """Make ``planned`` pairs: every veth in one host batch, then each namespace's ends
        looked up and configured (``sockets``: a route socket inside each namespace)."""
        if not planned:
            return
        fds: dict[str, int] = {}
        try:
            for end in (end for item in planned for end in item.ends):
                if end.ns not in fds:
                    fds[end.ns] = namespaces.open_fd(end.ns)
            host = self.net.batch()
            for item in planned:
                self.add_veth(host, item, fds)
            host.send()
        finally:
            for fd in fds.values():
                os.close(fd)
        for ns, ends in by_namespace(planned).items():
            inside = self.net.batch(sockets[ns])
            resolve = self.ask_indexes(inside, ends)
            resolve(inside.send())
            self.configure(inside, ends)
            inside.send()

    def add_veth(self, batch: Batch, item: Planned, fds: Mapping[str, int]) -> None:
        """The pair's veth into ``batch`` (a host batch): each end made straight inside its
        sliver's namespace, under its final name, MTU and address, down."""
        a, b = item.ends
        batch.add_veth(
            a.data["ifname"],
            ns_fd=fds[a.ns],
            mtu=self.mtu,
            address=a.data["mac"],
            up=False,
            peer=Peer(b.data["ifname"], fds[b.ns], mtu=self.mtu, address=b.data["mac"]),
        )

    @staticmethod
    def ask_indexes(
        batch: Batch, ends: Sequence[tuple[Planned, int]]
    ) -> Callable[[Mapping[int, int]], None]:
        """Ask ``batch`` (inside the ends' namespace) for the ifindex of each end (0: the
        pair's first, 1: its second); the returned function stores the answers."""
        asked = [
            (item, side, batch.get_link(item.ends[side].data["ifname"])) for item, side in ends
        ]

        def resolve(found: Mapping[int, int]) -> None:
            for item, side, seq in asked:
                if seq not in found:
                    raise KernelError(f"link {item.ends[side].data['ifname']} did not appear")
                item.link.data["ifindex" if side == 0 else "peer_index"] = found[seq]

        return resolve

    @staticmethod
    def configure(batch: Batch, ends: Sequence[tuple[Planned, int]]) -> None:
        """Up, address and tbf of each end, into ``batch`` (inside the ends' namespace)."""
        for item, side in ends:
            end = item.ends[side]
            index = int(item.link.data["ifindex" if side == 0 else "peer_index"])
            batch.set_link(index, up=True)
            if end.data.get("ipv4"):
                batch.add_address(index, end.data["ipv4"])
            if end.data.get("capacity"):
                batch.shape(index, float(end.data["capacity"]))
            for qdisc in item.qdiscs:
                if qdisc.data["ns"] == end.ns:
                    qdisc.data["ifindex"] = index

    def _needs_pair(self, link_id: str, *, fresh: bool) -> bool:
        owner = f"link:{link_id}"
        if self.marker(link_id) is None:
            return False
        current = [r for r in self.ledger.records(owner) if r.kind == "link"]
        alive = (
            not fresh
            and len(current) == 1
            and current[0].done
            and self.net.has_link(
                current[0].data["ifindex"], current[0].name, ns=current[0].data["ns"]
            )
        )
        if alive:
            return False
        for record in current:  # gone with a namespace, or half made
            self._removers["link"](record)
            for child in self.ledger.records(owner):
                if child.parent == record.id:
                    self.ledger.forget(child)
            self.ledger.forget(record)
        return True

    def _ends(self, link_id: str, building: Collection[str]) -> tuple[End, End] | None:
        marker = self.marker(link_id)
        assert marker is not None
        ends = []
        for sliver_id in marker.data["members"]:
            ns = names.netns_name(self.prefix, sliver_id)
            record = self.ledger.find(f"sliver:{sliver_id}", "netns", ns)
            found = [
                d
                for d in (record.data.get("direct", []) if record else [])
                if d["link_id"] == link_id
            ]
            if not found or not (ns in building or namespaces.exists(ns)):
                return None
            ends.append(End(ns, found[0]))
        return ends[0], ends[1]

    def _plan(self, link_id: str, building: Collection[str]) -> Planned | None:
        ends = self._ends(link_id, building)
        if ends is None:
            return None
        a, b = ends
        owner = f"link:{link_id}"
        link = self.ledger.begin(
            owner,
            "link",
            a.data["ifname"],
            data={"ns": a.ns, "peer_ns": b.ns, "peer": b.data["ifname"]},
        )
        qdiscs = [
            self.ledger.begin(
                owner, "qdisc", end.data["ifname"], parent=link.id, data={"ns": end.ns}
            )
            for end in ends
            if end.data.get("capacity")
        ]
        return Planned(link, qdiscs, ends)


def by_namespace(planned: Sequence[Planned]) -> dict[str, list[tuple[Planned, int]]]:
    """The ends of ``planned`` pairs grouped by namespace: (pair, 0 or 1) each."""
    found: dict[str, list[tuple[Planned, int]]] = {}
    for item in planned:
        for side, end in enumerate(item.ends):
            found.setdefault(end.ns, []).append((item, side))
    return found
