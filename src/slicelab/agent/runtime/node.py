"""NodeRuntime: the node agent's kernel layer behind one facade.

Everything it makes is written to the ledger first (see :mod:`slicelab.agent.ledger`) under
an owner: ``agent`` (control bridge, NAT table, cgroup parents, ip_forward),
``sliver:<id>`` or ``link:<id>``. ``ensure_*`` compare the spec's digest with the one the
owner was completely built from: equal and healthy means nothing to do; otherwise what
exists is torn down and built again. ``remove_*`` and :meth:`cleanup_all` unwind the
ledger by id, many owners at once, one kind of object at a time
(:func:`~slicelab.agent.ledger.unwind_many`). All names carry the agent's prefix and all
files live under its state dir, so several agents can share a machine (each in its own
network namespace).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from slicelab.agent.ledger import Ledger, Record, unwind, unwind_many
from slicelab.agent.net import names, namespaces
from slicelab.agent.net.batch import LOOPBACK, Batch, Peer
from slicelab.agent.net.nat import Nft, dnat_rules, masquerade_rule, metadata_rule
from slicelab.agent.net.netlink import Netlink
from slicelab.agent.runtime import cgroups, pairs, process
from slicelab.agent.runtime.errors import KernelError
from slicelab.agent.runtime.removers import (
    empty_trash,
    make_bulk_removers,
    make_removers,
    stop_groups,
)
from slicelab.agent.spec import (
    InterfaceSpec,
    LinkSpec,
    LinkStatus,
    SliverSpec,
    SliverState,
    SliverStatus,
    spec_digest,
)
from slicelab.domain.errors import InvalidInput, NotFound

__all__ = ["LINK_MTU", "NodeRuntime"]

LINK_MTU = 1450  # room for VXLAN's 50 bytes on a 1500-byte underlay
_AGENT = "agent"
_FORWARD = "/proc/sys/net/ipv4/ip_forward"
_SLIVER_ORDER = ("process", "cgroup", "mount", "dir", "nft-rules", "netns", "link", "qdisc")
_LINK_ORDER = ("link", "fdb")
_BUILD_CHUNK = 16  # slivers whose networks are made together (one host batch)
_NETNS_THREADS = 2  # namespaces made ahead of the build, beside it


def _sliver(sliver_id: str) -> str:
    return f"sliver:{sliver_id}"


def _link(link_id: str) -> str:
    return f"link:{link_id}"


@dataclass
class _Iface:
    """A link interface of a sliver being built: its record and what it attaches to."""

    spec: InterfaceSpec
    record: Record
    bridge: int | None
    qdiscs: list[Record]
    capacity: float | None = None


@dataclass
class _Plan:
    """The records (intents) of one sliver's build, begun together."""

    ns: str
    netns: Record
    control: Record
    ifaces: list[_Iface]
    rules: Record
    files: list[Record]
    process: Record

    def records(self) -> list[Record]:
        """Every record, in the order they were begun."""
        ifaces = [r for i in self.ifaces for r in (i.record, *i.qdiscs)]
        return [self.netns, self.control, *ifaces, self.rules, *self.files, self.process]


def _close_opened(
    pool: ThreadPoolExecutor,
    opened: Sequence[Future[socket.socket]],
    sockets: Mapping[str, socket.socket],
) -> None:
    """Stop opening namespaces; close every socket opened, taken or not."""
    pool.shutdown(wait=True, cancel_futures=True)
    taken = {id(sock) for sock in sockets.values()}
    for future in opened:
        if not future.cancelled() and future.exception() is None:
            sock = future.result()
            if id(sock) not in taken:
                sock.close()
    for sock in sockets.values():
        sock.close()


def _indexes(batch: Batch, wanted: list[tuple[Record, str, str]]) -> dict[int, int]:
    """Send ``batch`` plus a lookup of each name; store each ifindex in its record's data.
    Returns every answer of the send (for lookups asked before)."""
    keys = [(record, key, batch.get_link(name), name) for record, key, name in wanted]
    found = batch.send()
    for record, key, seq, name in keys:
        if seq not in found:
            raise KernelError(f"link {name} did not appear")
        record.data[key] = found[seq]
    return found


def _first(records: Sequence[Record], kind: str, name: str) -> Record | None:
    return next((r for r in records if r.kind == kind and r.name == name), None)


def _link_ifaces(records: Sequence[Record]) -> list[Record]:
    """A sliver's link interfaces (made) among its records."""
    return [r for r in records if r.kind == "link" and "link_id" in r.data and r.done]


def _split_ready(
    pending: Sequence[pairs.Planned], sockets: Mapping[str, object], building: Collection[str]
) -> tuple[list[pairs.Planned], list[pairs.Planned]]:
    """The pairs whose namespaces are all there (open in ``sockets``, or not being built),
    and the others."""
    ready = [p for p in pending if all(e.ns in sockets or e.ns not in building for e in p.ends)]
    taken = {id(p) for p in ready}
    return ready, [p for p in pending if id(p) not in taken]


class NodeRuntime:
    """Slivers and links of one agent. Not thread-safe: one caller at a time."""

    def __init__(
        self,
        *,
        state_dir: Path,
        prefix: str,
        control_subnet: str,
        host_ip: str,
        cgroup_mode: Literal["auto", "v1", "v2"] = "auto",
        stop_timeout: float = 5.0,
        metadata_port: int | None = None,
    ) -> None:
        self.prefix = names.check_prefix(prefix)
        self.state_dir = state_dir
        self.subnet = ipaddress.IPv4Network(control_subnet)
        self.gateway = next(self.subnet.hosts())
        self.host_ip = host_ip
        self.stop_timeout = stop_timeout
        self.metadata_port = metadata_port
        self.ledger = Ledger(state_dir / "ledger.sqlite3")
        self.net = Netlink()
        self.nft = Nft()
        self.cgroups = cgroups.select_driver(prefix=prefix, mode=cgroup_mode)
        self._launcher = process.Launcher(detach=[namespaces.NETNS_DIR, state_dir / "slivers"])
        self._removers = make_removers(self.net, self.nft)
        self._trash = state_dir / "trash"
        self._bulk = make_bulk_removers(self.net, self.nft, trash=self._trash)
        self._sweeper: threading.Thread | None = None
        self.pairs = pairs.Pairs(
            ledger=self.ledger,
            net=self.net,
            prefix=self.prefix,
            mtu=LINK_MTU,
            removers=self._removers,
        )
        self.table = names.table_name(prefix)
        self.control_bridge = names.ifname(prefix, "k", "control")
        if self._trash.exists():
            self._sweep()  # what a killed agent left in the trash

    def close(self) -> None:
        self._launcher.close()
        self.wait_reclaimed()
        self.net.close()
        self.ledger.close()

    def wait_reclaimed(self) -> None:
        """Wait until the files of removed slivers are deleted from the disk."""
        if self._sweeper is not None:
            self._sweeper.join()
        empty_trash(self._trash)

    def _sweep(self) -> None:
        """Delete the trash's contents in a background thread (one at a time)."""
        if self._sweeper is None or not self._sweeper.is_alive():
            self._sweeper = threading.Thread(
                target=empty_trash, args=(self._trash,), name="slicelab-trash", daemon=True
            )
            self._sweeper.start()

    # slivers ------------------------------------------------------------------
    def ensure_sliver(self, spec: SliverSpec) -> SliverStatus:
        return self.ensure_slivers([spec])[0]

    def ensure_slivers(self, specs: Sequence[SliverSpec]) -> list[SliverStatus]:
        """:meth:`ensure_sliver` of many at once, with the same result and guarantees.

        Those to (re)build are built together: their intents in one ledger transaction,
        their port forwarding in one nft transaction, their inits started one after the
        other and awaited together, and their completion in one more transaction.
        """
        if len({s.sliver_id for s in specs}) != len(specs):
            raise InvalidInput("a sliver id appears twice", field="sliver_id")
        # new identity files need no rebuild
        digests = {spec.sliver_id: spec_digest(replace(spec, files=())) for spec in specs}
        with self.ledger.transaction():  # the checks' unwinds and marks: one commit
            fresh = [spec for spec in specs if not self._current(spec, digests[spec.sliver_id])]
        started: dict[str, int] = {}
        if fresh:
            self._ensure_agent()
            started = self._build_slivers(fresh, digests)
        return self._statuses([spec.sliver_id for spec in specs], started)

    def _current(self, spec: SliverSpec, digest: str) -> bool:
        """Bring an intact sliver built from this spec (whose digest is ``digest``) up to
        date (True), or unwind it."""
        owner = _sliver(spec.sliver_id)
        if (
            self.ledger.owner_digest(owner) == digest
            and self._intact(spec.sliver_id)
            and self._links_match(spec)
        ):
            self._write_files(spec)
            if self.status(spec.sliver_id).state is not SliverState.RUNNING:
                self.start(spec.sliver_id)
            return True
        unwind(self.ledger, owner, self._removers)
        self.ledger.mark_owner(owner, digest=digest, complete=False)
        return False

    def remove_sliver(self, sliver_id: str) -> None:
        self.remove_slivers([sliver_id])

    def remove_slivers(self, sliver_ids: Sequence[str]) -> None:
        """Remove many slivers together, one kind of object at a time for all of them.

        Every process killed, then awaited (a sliver's root goes with its last process:
        it is mounted in the sliver's own mount namespace); the cgroup directories removed
        in one pass; namespaces unmounted in parallel; the sliver directories renamed into
        the trash (deleted by a background thread, see :meth:`wait_reclaimed`); the nft
        rules deleted in one transaction; the veths deleted in one netlink batch as one
        netdev group. The records are forgotten when all is done.
        """
        owners = [_sliver(sliver_id) for sliver_id in sliver_ids]
        unwind_many(self.ledger, owners, self._removers, self._bulk, order=_SLIVER_ORDER)
        self._drop(owners)
        self._launcher.reap()
        self._sweep()

    def _drop(self, owners: Sequence[str]) -> None:
        with self.ledger.transaction():
            for owner in owners:
                self.ledger.drop_owner(owner)

    def list_slivers(self) -> list[SliverStatus]:
        return [
            self.status(o.split(":", 1)[1]) for o in self.ledger.owners() if o.startswith("sliver:")
        ]

    def status(self, sliver_id: str) -> SliverStatus:
        """What the sliver is now (its records read once)."""
        return self._statuses([sliver_id], {})[0]

    def _statuses(self, sliver_ids: Sequence[str], started: Mapping[str, int]
                  ) -> list[SliverStatus]:
        """What the slivers are now, their records read together; ``started``: the inits
        this call has just seen become PID 1 of their namespaces (not looked up again)."""
        owners = [_sliver(s) for s in sliver_ids]
        records, facts = self.ledger.records_of(owners), self.ledger.owner_facts(owners)
        return [
            self._status(s, records[o], facts[o], started.get(s))
            for s, o in zip(sliver_ids, owners, strict=True)
        ]

    def _status(self, sliver_id: str, records: Sequence[Record],
                facts: tuple[str | None, str | None], init: int | None) -> SliverStatus:
        if not records:
            return SliverStatus(sliver_id, SliverState.ABSENT)
        init = init or self._init_pid(sliver_id)
        digest, address = facts
        state = (
            SliverState.RUNNING if init else SliverState.STOPPED if digest else SliverState.BROKEN
        )
        ns = names.netns_name(self.prefix, sliver_id)
        ports = _first(records, "nft-rules", self._comment(sliver_id))
        netns = _first(records, "netns", ns)
        return SliverStatus(
            sliver_id,
            state,
            init_pid=init,
            control_ip=address,
            netns=ns,
            ssh_port=ports.data.get("first_port") if ports else None,
            interfaces=(
                *(r.data["inner"] for r in _link_ifaces(records)),
                *(str(d["ifname"]) for d in (netns.data.get("direct", []) if netns else [])),
            ),
        )

    def start(self, sliver_id: str) -> None:
        record = self._record(_sliver(sliver_id), "process", "init")
        if self._init_pid(sliver_id) is None:
            self._launch(sliver_id, record)

    def stop(self, sliver_id: str, *, timeout: float | None = None) -> None:
        """SIGTERM to every process of the sliver, SIGKILL after ``timeout`` seconds."""
        self._record(_sliver(sliver_id), "process", "init")
        stop_groups(
            self._groups(sliver_id), timeout=self.stop_timeout if timeout is None else timeout
        )

    def restart(self, sliver_id: str) -> None:
        self.stop(sliver_id)
        self.start(sliver_id)

    def exec(
        self, sliver_id: str, argv: Sequence[str], *, timeout: float = 30.0
    ) -> tuple[int, str, str]:
        """Run ``argv`` inside the sliver (all its namespaces, its root, its cgroups)."""
        init = self._init_pid(sliver_id)
        if init is None:
            raise NotFound(f"sliver {sliver_id} is not running")
        return process.run_inside(
            init_pid=init, groups=self._groups(sliver_id), argv=argv, timeout=timeout
        )

    # links ----------------------------------------------------------------------
    def ensure_link(self, spec: LinkSpec) -> LinkStatus:
        """A link: a veth pair between its two members when both are on this host and
        nothing else is on it, a VXLAN device inside its one local member's namespace when
        the others are remote (:mod:`slicelab.agent.runtime.pairs`), else a bridge (with
        VXLAN to the remote hosts) that the members' veths join."""
        owner = _link(spec.link_id)
        digest = spec_digest(spec)
        bridge = names.ifname(self.prefix, "b", spec.link_id)
        if self.ledger.owner_digest(owner) != digest or not self._link_intact(spec, bridge):
            unwind(self.ledger, owner, self._removers)
            self.ledger.mark_owner(owner, digest=digest, complete=False)
            if pairs.kind_of(spec) == "bridge":
                self._build_link(spec, bridge)
            else:
                self.pairs.declare(spec)
            self.ledger.mark_owner(owner, digest=digest, complete=True)
        if pairs.kind_of(spec) == pairs.PAIR:
            self.pairs.connect([spec.link_id], fresh=False)
        for iface in self._members(spec.link_id):
            self._attach(iface)
        return self.link_status(spec.link_id)

    def _link_intact(self, spec: LinkSpec, bridge: str) -> bool:
        if pairs.kind_of(spec) != "bridge":
            return self.pairs.marker(spec.link_id, kind=pairs.kind_of(spec)) is not None
        record = self.ledger.find(_link(spec.link_id), "link", bridge)
        return record is not None and self.net.has_link(record.data.get("ifindex", -1), bridge)

    def remove_link(self, link_id: str) -> None:
        self.remove_links([link_id])

    def remove_links(self, link_ids: Sequence[str]) -> None:
        """Remove many links together: their bridges and VXLAN devices deleted in one
        netlink batch as one netdev group (one RCU grace period for all)."""
        owners = [_link(link_id) for link_id in link_ids]
        unwind_many(self.ledger, owners, self._removers, self._bulk, order=_LINK_ORDER)
        self._drop(owners)

    def link_status(self, link_id: str) -> LinkStatus:
        records = self.ledger.records(_link(link_id))
        devices = {
            r.name[len(self.prefix)]: r.name
            for r in records
            if r.kind == "link" and "ns" not in r.data
        }
        present = bool(devices) or any(r.kind in (pairs.PAIR, pairs.TUNNEL) for r in records)
        return LinkStatus(link_id, present, devices.get("b"), devices.get("x"))

    def cleanup_all(self) -> None:
        """Remove everything this agent ever made (from the ledger), the agent's last."""
        owners = self.ledger.owners()
        self.remove_slivers([o.split(":", 1)[1] for o in owners if o.startswith("sliver:")])
        self.remove_links([o.split(":", 1)[1] for o in owners if o.startswith("link:")])
        for owner in owners:
            if owner != _AGENT and not owner.startswith(("sliver:", "link:")):
                unwind(self.ledger, owner, self._removers)
                self.ledger.drop_owner(owner)
        unwind(self.ledger, _AGENT, self._removers)
        self.ledger.drop_owner(_AGENT)

    # the agent's shared objects ---------------------------------------------------
    def _ensure_agent(self) -> None:
        if self.ledger.owner_digest(_AGENT) == "ready":
            return
        unwind(self.ledger, _AGENT, self._removers)
        self._agent_cgroups()
        self._agent_network()
        self._agent_nat()
        self.ledger.mark_owner(_AGENT, digest="ready", complete=True)

    def _agent_cgroups(self) -> None:
        # recorded even when present: the last agent out removes the shared "slicelab" dirs
        for parent in self.cgroups.parents():
            with self.ledger.step(_AGENT, "shared-cgroup", str(parent)):
                parent.mkdir(exist_ok=True)
        if isinstance(self.cgroups, cgroups.CgroupV2):
            self.cgroups.delegate()

    def _agent_network(self) -> None:
        with self.ledger.step(_AGENT, "link", self.control_bridge) as rec:
            rec.data["ifindex"] = self.net.add_bridge(self.control_bridge)
            self.net.add_address(rec.data["ifindex"], f"{self.gateway}/{self.subnet.prefixlen}")
        previous = Path(_FORWARD).read_text()
        if previous.strip() != "1":
            with self.ledger.step(_AGENT, "sysctl", _FORWARD, data={"previous": previous}):
                Path(_FORWARD).write_text("1")

    def _agent_nat(self) -> None:
        with self.ledger.step(_AGENT, "nft-table", self.table) as rec:
            rec.data["handle"] = self.nft.add_table(self.table)
        comment = f"{self.prefix}:masquerade"
        with self.ledger.step(_AGENT, "nft-rules", comment, data={"table": self.table}) as rec:
            rule = masquerade_rule(
                self.table, subnet=str(self.subnet), bridge=self.control_bridge, comment=comment
            )
            rec.data["rules"] = [("postrouting", self.nft.add_rule(rule))]
        if self.metadata_port:
            self._metadata_nat(self.metadata_port)

    def _metadata_nat(self, port: int) -> None:
        """169.254.169.254:80 from a sliver -> the metadata server on the gateway."""
        comment = f"{self.prefix}:metadata"
        with self.ledger.step(_AGENT, "nft-rules", comment, data={"table": self.table}) as rec:
            rule = metadata_rule(
                self.table,
                bridge=self.control_bridge,
                gateway=str(self.gateway),
                port=port,
                comment=comment,
            )
            rec.data["rules"] = [("prerouting", self.nft.add_rule(rule))]

    # building a sliver ----------------------------------------------------------------
    def _build_slivers(self, specs: Sequence[SliverSpec], digests: Mapping[str, str]
                       ) -> dict[str, int]:
        """Record every intent in one transaction, make the objects, mark them done in one;
        the pid of each sliver's init, seen as PID 1 of its namespace.

        Chunk by chunk, the slivers' networks are made and their inits launched; the
        inits start (other processes, the other core) while the next chunk is built, and
        are awaited together at the end.
        """
        candidates = self._candidates()
        with self.ledger.transaction():
            plans = [self._plan(spec, candidates) for spec in specs]
        built = list(zip(specs, plans, strict=True))
        made, launchers = self._make_slivers(built)
        self._await_inits(
            [
                (spec.sliver_id, plan.process, launcher)
                for (spec, plan), launcher in zip(built, launchers, strict=True)
            ]
        )
        with self.ledger.transaction():
            for record in (r for item in made for r in item.records()):
                self.ledger.finish(record)
            for spec, plan in built:
                for record in plan.records():
                    self.ledger.finish(record)
                self.ledger.mark_owner(
                    _sliver(spec.sliver_id), complete=True, digest=digests[spec.sliver_id]
                )
        return {spec.sliver_id: int(plan.process.data["pid"]) for spec, plan in built}

    def _make_slivers(
        self, built: Sequence[tuple[SliverSpec, _Plan]]
    ) -> tuple[list[pairs.Planned], list[int]]:
        """The kernel objects of planned slivers: the pair links made, the inits' launchers.

        Two pool threads make the namespaces, files and cgroups ahead of this thread, then
        the port forwarding; this thread makes the networks chunk by chunk (with the pair
        links whose members are all there) and hands each chunk's inits to the launch
        thread (:class:`process.Starter`), which starts them while the next chunk is built.
        """
        plans = [plan for _, plan in built]
        sockets: dict[str, socket.socket] = {}  # inside each namespace, for the pairs too
        pending = self._pairs_of(plans)
        made: list[pairs.Planned] = []
        pool = ThreadPoolExecutor(max_workers=_NETNS_THREADS, thread_name_prefix="slicelab-ns")
        starter = process.Starter(self._launcher)
        opened = [pool.submit(self._ready, spec, plan.ns) for spec, plan in built]
        rules = pool.submit(self._forward_ports, [spec for spec, _ in built], plans)
        try:
            for start in range(0, len(built), _BUILD_CHUNK):
                chunk = built[start : start + _BUILD_CHUNK]
                for (_, plan), future in zip(chunk, opened[start:], strict=False):
                    sockets[plan.ns] = future.result()
                now, pending = _split_ready(pending, sockets, {plan.ns for plan in plans})
                self._chunk_network(chunk, sockets, now)
                made += now
                starter.put([self._launch_for(spec) for spec, _ in chunk])
            rules.result()
        finally:
            starter.stop()  # no launch is left in flight, even on a failure
            _close_opened(pool, opened, sockets)
        return made, starter.pids()

    def _pairs_of(self, plans: Sequence[_Plan]) -> list[pairs.Planned]:
        """The pair links of the slivers being built, planned (records begun)."""
        return self.pairs.plan(
            [d["link_id"] for plan in plans for d in plan.netns.data.get("direct", [])],
            fresh=True,
            building={plan.ns for plan in plans},
        )

    def _ready(self, spec: SliverSpec, ns: str) -> socket.socket:
        """The sliver's namespace (a route socket inside it, lo still down) and its files
        and cgroups: the slow system calls of a build, made in the build's pool threads
        (no ledger here: it belongs to the building thread)."""
        sock = self.net.open_netns(ns, lo_up=False)
        try:
            self._prepare_files(spec)
        except BaseException:
            sock.close()
            raise
        return sock

    def _launch_for(self, spec: SliverSpec) -> process.Launch:
        """What the launcher of a sliver being built needs (its files are prepared)."""
        base = self.state_dir / "slivers" / spec.sliver_id
        return process.Launch(
            namespaces.path_of(names.netns_name(self.prefix, spec.sliver_id)),
            self._overlay(spec.sliver_id, spec.image_dir),
            tuple(self._groups(spec.sliver_id)),
            base / "console.log",
        )

    def _prepare_files(self, spec: SliverSpec) -> None:
        """Root file system, identity, cgroups and limits: what the init's launcher needs
        (forked held by :meth:`process.Launcher.spawn_many` until released)."""
        self._write_identity(spec, self._rootfs(spec))
        for group in self.cgroups.dirs(spec.sliver_id):
            group.mkdir(exist_ok=True)
        self.cgroups.apply(
            spec.sliver_id,
            cgroups.Limits(
                cores=spec.cores, memory_bytes=spec.memory_mib << 20, pids_max=spec.pids_max
            ),
        )

    def _plan(self, spec: SliverSpec, candidates: Iterator[str]) -> _Plan:
        owner = _sliver(spec.sliver_id)
        ns = names.netns_name(self.prefix, spec.sliver_id)
        markers = [
            (iface, self.pairs.member(iface.link_id, spec.sliver_id)) for iface in spec.interfaces
        ]
        direct = [pairs.end_data(iface, marker) for iface, marker in markers if marker]
        with self.ledger.transaction():
            netns = self.ledger.begin(
                owner, "netns", ns, data={"direct": direct} if direct else None
            )
            address = self.ledger.take_address(owner, candidates)
            control = self.ledger.begin(
                owner,
                "link",
                names.ifname(self.prefix, "c", spec.sliver_id),
                parent=netns.id,
                data={"address": address},
            )
            ifaces = [
                self._plan_iface(spec.sliver_id, iface, ns, netns)
                for iface, marker in markers
                if marker is None
            ]
            base = self.state_dir / "slivers" / spec.sliver_id
            rules = self.ledger.begin(
                owner,
                "nft-rules",
                self._comment(spec.sliver_id),
                data={"table": self.table, "first_port": spec.ports.first_port},
            )
            fs = [
                self.ledger.begin(owner, "dir", str(base)),
                self.ledger.begin(
                    owner, "mount", str(base / "root"), data={"lower": str(spec.image_dir)}
                ),
            ]
            groups = [str(g) for g in self.cgroups.dirs(spec.sliver_id)]
            fs += [self.ledger.begin(owner, "cgroup", g) for g in groups]
            process = self.ledger.begin(owner, "process", "init", data={"groups": groups})
        return _Plan(ns, netns, control, ifaces, rules, fs, process)

    def _plan_iface(self, sliver_id: str, iface: InterfaceSpec, ns: str, netns: Record) -> _Iface:
        owner = _sliver(sliver_id)
        host = names.ifname(self.prefix, "v", f"{sliver_id}/{iface.link_id}")
        data = {
            "link_id": iface.link_id,
            "inner": iface.ifname,
            "ns_name": ns,
            "capacity": iface.capacity_mbps,
        }
        tunnel = self.pairs.member(iface.link_id, sliver_id, kind=pairs.TUNNEL)
        if tunnel is not None:
            return self._plan_tunnel(iface, tunnel, data, netns)
        record = self.ledger.begin(owner, "link", host, parent=netns.id, data=data)
        bridge = self.ledger.find(
            _link(iface.link_id), "link", names.ifname(self.prefix, "b", iface.link_id)
        )
        if bridge is None or "ifindex" not in bridge.data:
            return _Iface(iface, record, None, [])
        capacity = iface.capacity_mbps or bridge.data.get("capacity")
        qdiscs = (
            [
                self.ledger.begin(owner, "qdisc", name, parent=record.id, data={"ns": where})
                for name, where in ((host, None), (iface.ifname, ns))
            ]
            if capacity
            else []
        )
        return _Iface(iface, record, bridge.data["ifindex"], qdiscs, capacity)

    def _plan_tunnel(
        self, iface: InterfaceSpec, tunnel: Record, data: Mapping[str, object], netns: Record
    ) -> _Iface:
        """A VXLAN device inside the sliver's namespace, recorded there (it dies with it)."""
        owner, ns = netns.owner, netns.name
        capacity = iface.capacity_mbps or tunnel.data.get("capacity")
        record = self.ledger.begin(
            owner,
            "link",
            iface.ifname,
            parent=netns.id,
            data={
                **data,
                "ns": ns,
                "tunnel": True,
                "vni": tunnel.data["vni"],
                "local_ip": tunnel.data["local_ip"],
                "remotes": tunnel.data["remotes"],
            },
        )
        qdiscs = (
            [self.ledger.begin(owner, "qdisc", iface.ifname, parent=record.id, data={"ns": ns})]
            if capacity
            else []
        )
        return _Iface(iface, record, None, qdiscs, capacity)

    def _chunk_network(
        self,
        chunk: Sequence[tuple[SliverSpec, _Plan]],
        sockets: dict[str, socket.socket],
        now: Sequence[pairs.Planned],
    ) -> None:
        """The networks of a chunk of slivers and the pair links ``now`` can have: every
        host-side device in one host batch, then each sliver's namespace looked up and
        configured (two sends each), then the host side's settings in one more batch.
        ``sockets``: route sockets inside the namespaces (those opened here are added)."""
        host = self.net.batch()
        self._host_devices(host, chunk, now)
        ends = pairs.by_namespace(now)
        for spec, plan in chunk:
            inner = self.net.batch(sockets[plan.ns])
            self._inside(spec, plan, (host, inner), ends.pop(plan.ns, []))
        for ns, rest in ends.items():  # ends in slivers built before, or not being built
            if ns not in sockets:
                sockets[ns] = namespaces.run_in(ns, namespaces.route_socket)
            inner = self.net.batch(sockets[ns])
            self.pairs.ask_indexes(inner, rest)(inner.send())
            self.pairs.configure(inner, rest)
            inner.send()
        host.send()

    def _host_devices(
        self,
        host: Batch,
        chunk: Sequence[tuple[SliverSpec, _Plan]],
        now: Sequence[pairs.Planned],
    ) -> None:
        """Every veth and VXLAN device of ``chunk`` and the ``now`` pairs, in one send;
        the host-side ifindexes in their records."""
        bridge = self._record(_AGENT, "link", self.control_bridge).data["ifindex"]
        fds: dict[str, int] = {}
        try:
            wanted: list[tuple[Record, str, str]] = []
            for _, plan in chunk:
                fds[plan.ns] = namespaces.open_fd(plan.ns)
                wanted += self._sliver_devices(host, plan, fds[plan.ns], bridge)
            for item in now:
                for end in item.ends:
                    if end.ns not in fds:
                        fds[end.ns] = namespaces.open_fd(end.ns)
                self.pairs.add_veth(host, item, fds)
            _indexes(host, wanted)
        finally:
            for fd in fds.values():
                os.close(fd)

    def _sliver_devices(
        self, host: Batch, plan: _Plan, ns_fd: int, bridge: int
    ) -> list[tuple[Record, str, str]]:
        """The sliver's control veth and link devices into ``host``; the lookups to make."""
        host.add_veth(plan.control.name, peer=Peer("eth0", ns_fd), master=bridge)
        for item in plan.ifaces:
            if item.record.data.get("tunnel"):
                data = item.record.data
                host.add_vxlan(
                    item.spec.ifname,
                    ns_fd=ns_fd,
                    vni=data["vni"],
                    local_ip=data["local_ip"],
                    mtu=LINK_MTU,
                    address=item.spec.mac,
                )
                continue
            host.add_veth(
                item.record.name,
                mtu=LINK_MTU,
                master=item.bridge,
                peer=Peer(item.spec.ifname, ns_fd, mtu=LINK_MTU, address=item.spec.mac),
            )
        return [(plan.control, "ifindex", plan.control.name)] + [
            (i.record, "ifindex", i.record.name)
            for i in plan.ifaces
            if not i.record.data.get("tunnel")
        ]

    def _inside(
        self,
        spec: SliverSpec,
        plan: _Plan,
        batches: tuple[Batch, Batch],
        ends: Sequence[tuple[pairs.Planned, int]],
    ) -> None:
        """The sliver's side: its devices (and pair ``ends``) looked up in one send and
        configured in one more; the host side's settings go into the host batch."""
        host, inner = batches
        resolve = self.pairs.ask_indexes(inner, ends)
        resolve(
            _indexes(
                inner,
                [(plan.control, "inner_index", "eth0")]
                + [(i.record, "inner_index", i.spec.ifname) for i in plan.ifaces],
            )
        )
        for item in plan.ifaces:
            if item.record.data.get("tunnel"):
                item.record.data["ifindex"] = item.record.data["inner_index"]
        self._configure(spec, plan, host, inner)
        self.pairs.configure(inner, ends)
        inner.send()

    def _configure(self, spec: SliverSpec, plan: _Plan, host: Batch, inner: Batch) -> None:
        host.isolate_port(plan.control.data["ifindex"])
        inner.set_link(LOOPBACK, up=True)
        inner.set_link(plan.control.data["inner_index"], up=True)
        inner.add_address(
            plan.control.data["inner_index"],
            f"{plan.control.data['address']}/{self.subnet.prefixlen}",
        )
        inner.default_route(str(self.gateway))
        for item in plan.ifaces:
            index, inside = item.record.data["ifindex"], item.record.data["inner_index"]
            inner.set_link(inside, up=True)
            if item.spec.ipv4:
                inner.add_address(inside, item.spec.ipv4)
            if item.record.data.get("tunnel"):
                self._configure_tunnel(item, inner)
            elif item.capacity:
                host.shape(index, item.capacity)
                inner.shape(inside, item.capacity)
                for qdisc, ifindex in zip(item.qdiscs, (index, inside), strict=True):
                    qdisc.data["ifindex"] = ifindex

    @staticmethod
    def _configure_tunnel(item: _Iface, inner: Batch) -> None:
        """Its remote hosts (head-end replication) and its tbf, inside the namespace."""
        index = item.record.data["inner_index"]
        for remote in item.record.data["remotes"]:
            inner.add_remote(index, remote)
        if item.capacity:
            inner.shape(index, item.capacity)
            for qdisc in item.qdiscs:
                qdisc.data["ifindex"] = index

    def _attach(self, iface: Record) -> None:
        """Put a sliver's link interface on its link's bridge and shape both directions."""
        link = iface.data["link_id"]
        bridge = self.ledger.find(_link(link), "link", names.ifname(self.prefix, "b", link))
        if bridge is None or "ifindex" not in bridge.data or "ifindex" not in iface.data:
            return
        self.net.configure(iface.data["ifindex"], master=bridge.data["ifindex"])
        capacity = iface.data.get("capacity") or bridge.data.get("capacity")
        if capacity:
            self._shape(iface, capacity)

    def _shape(self, iface: Record, capacity: float) -> None:
        owner, ns = iface.owner, iface.data["ns_name"]
        for name, index, where in (
            (iface.name, iface.data["ifindex"], None),
            (iface.data["inner"], iface.data["inner_index"], ns),
        ):
            if self.ledger.find(owner, "qdisc", name) is None:
                data = {"ifindex": index, "ns": where}
                with self.ledger.step(owner, "qdisc", name, parent=iface.id, data=data):
                    self.net.shape(index, capacity, ns=where)

    def _members(self, link_id: str) -> Iterator[Record]:
        for owner in self.ledger.owners():
            if owner.startswith("sliver:"):
                for record in self._ifaces(owner):
                    if record.data.get("link_id") == link_id:
                        yield record

    def _ifaces(self, owner: str) -> list[Record]:
        return _link_ifaces(self.ledger.records(owner))

    def _forward_ports(self, specs: Sequence[SliverSpec], plans: Sequence[_Plan]) -> None:
        """The slivers' DNAT rules in one nft transaction; each record gets its handles."""
        rules = [
            (plan, rule)
            for spec, plan in zip(specs, plans, strict=True)
            for chain in ("prerouting", "output")
            for rule in dnat_rules(
                self.table,
                chain=chain,
                host_ip=self.host_ip,
                target=str(plan.control.data["address"]),
                first_port=spec.ports.first_port,
                count=spec.ports.count,
                comment=self._comment(spec.sliver_id),
            )
        ]
        handles = self.nft.add_rules([rule for _, rule in rules])
        for plan in plans:
            plan.rules.data["rules"] = []
        for (plan, rule), handle in zip(rules, handles, strict=True):
            plan.rules.data["rules"].append((rule["chain"], handle))

    def _overlay(self, sliver_id: str, lower: Path) -> process.Overlay:
        base = self.state_dir / "slivers" / sliver_id
        return process.Overlay(
            lower=lower, upper=base / "upper", work=base / "work", root=base / "root"
        )

    def _rootfs(self, spec: SliverSpec) -> process.Overlay:
        """The overlay's directories; the init's launcher mounts it in its own mount
        namespace (see :mod:`slicelab.agent.runtime.spawner`)."""
        overlay = self._overlay(spec.sliver_id, spec.image_dir)
        for path in (overlay.upper, overlay.work, overlay.root):
            path.mkdir(parents=True, exist_ok=True)
        return overlay

    def _write_files(self, spec: SliverSpec) -> None:
        """The identity files, through the running init's root, else into the upper dir."""
        init = self._init_pid(spec.sliver_id)
        root = Path(f"/proc/{init}/root") if init else self._rootfs(spec).upper
        (root / "etc/slicelab").mkdir(parents=True, exist_ok=True)
        for name, text in spec.files:
            target = root / "etc/slicelab" / name
            if not target.exists() or target.read_text() != text:
                target.write_text(text)

    @staticmethod
    def _upper_dir(overlay: process.Overlay, relative: str) -> Path:
        """A directory in the upper dir with the mode of the image's (the upper one's
        attributes are what the sliver sees)."""
        for depth in range(1, relative.count("/") + 2):
            part = "/".join(relative.split("/")[:depth])
            target = overlay.upper / part
            if not target.is_dir():
                image = overlay.lower / part
                target.mkdir(mode=image.stat().st_mode & 0o7777 if image.is_dir() else 0o755)
        return overlay.upper / relative

    def _write_identity(self, spec: SliverSpec, overlay: process.Overlay) -> None:
        """Identity files into the upper dir, before the overlay is mounted."""
        etc = self._upper_dir(overlay, "etc")
        (etc / "hostname").write_text(spec.hostname + "\n")
        short = spec.hostname.split(".")[0]
        (etc / "hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {spec.hostname} {short}\n")
        mine = self._upper_dir(overlay, "etc/slicelab")
        for name, text in spec.files:
            (mine / name).write_text(text)
        ssh = self._upper_dir(overlay, "root/.ssh")
        ssh.chmod(0o700)
        keys = ssh / "authorized_keys"
        keys.write_text("".join(k.strip() + "\n" for k in spec.ssh_authorized_keys))
        keys.chmod(0o600)

    def _launch(self, sliver_id: str, record: Record) -> None:
        launcher = self._launcher.release([self._spawn_init(sliver_id)])[0]
        self._await_init(sliver_id, record, launcher)
        self.ledger.finish(record)

    def _spawn_init(self, sliver_id: str) -> process.Held:
        """Fork the launcher of the sliver's init, held at its pipe."""
        return self._launcher.spawn_many([self._launch_of(sliver_id)])[0]

    def _launch_of(self, sliver_id: str) -> process.Launch:
        base = self.state_dir / "slivers" / sliver_id
        mount = self.ledger.find(_sliver(sliver_id), "mount", str(base / "root"))
        if mount is None or "lower" not in mount.data or not (base / "upper").is_dir():
            raise KernelError(f"the root filesystem of sliver {sliver_id} is missing")
        return process.Launch(
            namespaces.path_of(names.netns_name(self.prefix, sliver_id)),
            self._overlay(sliver_id, Path(mount.data["lower"])),
            tuple(self._groups(sliver_id)),
            base / "console.log",
        )

    def _await_init(self, sliver_id: str, record: Record, launcher: int) -> None:
        self._await_inits([(sliver_id, record, launcher)])

    def _await_inits(
        self, waiting: list[tuple[str, Record, int]], *, patience: float = 10.0
    ) -> None:
        """Wait until each init is PID 1 of its namespace; its pid and start time in its
        record. Fails when a launcher dies, or when no init has started for ``patience``
        seconds (many inits starting at once on a loaded machine take a while together)."""
        deadline = time.monotonic() + patience
        while waiting:
            left = []
            for sliver_id, record, launcher in waiting:
                pid = process.init_of(launcher)
                if pid is not None:
                    record.data.update(pid=pid, start=process.proc_start_time(pid))
                elif not process.alive(launcher):
                    raise KernelError(f"the init of sliver {sliver_id} did not start")
                else:
                    left.append((sliver_id, record, launcher))
            if len(left) < len(waiting):
                deadline = time.monotonic() + patience
            elif time.monotonic() > deadline:
                raise KernelError(f"the init of sliver {left[0][0]} did not start")
            waiting = left
            if waiting:
                time.sleep(min(0.005, 0.0005 * len(waiting)))

    # helpers -------------------------------------------------------------------------
    def _groups(self, sliver_id: str) -> list[Path]:
        return self.cgroups.dirs(sliver_id)

    def _init_pid(self, sliver_id: str) -> int | None:
        return process.find_init(cgroups.procs(self._groups(sliver_id)[0]))

    def _intact(self, sliver_id: str) -> bool:
        base = self.state_dir / "slivers" / sliver_id
        return (
            self.net.netns_exists(names.netns_name(self.prefix, sliver_id))
            and (base / "upper").is_dir()
            and all(g.exists() for g in self._groups(sliver_id))
        )

    def _direct(self, sliver_id: str) -> list[dict[str, object]]:
        """The sliver's ends of pair links (see :mod:`slicelab.agent.runtime.pairs`)."""
        netns = self.ledger.find(
            _sliver(sliver_id), "netns", names.netns_name(self.prefix, sliver_id)
        )
        return list(netns.data.get("direct", [])) if netns else []

    def _links_match(self, spec: SliverSpec) -> bool:
        """Whether each interface was built for its link's current kind."""
        built = {str(d["link_id"]): pairs.PAIR for d in self._direct(spec.sliver_id)}
        built.update(
            {
                r.data["link_id"]: pairs.TUNNEL
                for r in self._ifaces(_sliver(spec.sliver_id))
                if r.data.get("tunnel")
            }
        )
        return all(
            self._link_kind(i.link_id, spec.sliver_id) == built.get(i.link_id, "bridge")
            for i in spec.interfaces
        )

    def _link_kind(self, link_id: str, sliver_id: str) -> str:
        for kind in (pairs.PAIR, pairs.TUNNEL):
            if self.pairs.member(link_id, sliver_id, kind=kind) is not None:
                return kind
        return "bridge"

    def _record(self, owner: str, kind: str, name: str) -> Record:
        record = self.ledger.find(owner, kind, name)
        if record is None:
            raise NotFound(f"{owner} has no {kind} {name}")
        return record

    def _comment(self, sliver_id: str) -> str:
        return f"{self.prefix}:{sliver_id}:ports"

    def _candidates(self) -> Iterator[str]:
        """Free control addresses, lowest first (one iterator serves a whole build)."""
        used = self.ledger.used_addresses()
        return (str(h) for h in self.subnet.hosts() if h != self.gateway and str(h) not in used)

    # building a link -------------------------------------------------------------------
    def _build_link(self, spec: LinkSpec, bridge: str) -> None:
        owner = _link(spec.link_id)
        with self.ledger.step(owner, "link", bridge, data={"capacity": spec.capacity_mbps}) as rec:
            rec.data["ifindex"] = self.net.add_bridge(bridge)
            self.net.configure(rec.data["ifindex"], mtu=LINK_MTU)
        if not spec.remotes:
            return
        vxlan = names.ifname(self.prefix, "x", spec.link_id)
        with self.ledger.step(owner, "link", vxlan) as vrec:
            vrec.data["ifindex"] = self.net.add_vxlan(
                vxlan, vni=spec.vni, local_ip=spec.local_ip, mtu=LINK_MTU
            )
        self.net.configure(vrec.data["ifindex"], master=rec.data["ifindex"], state="up")
        for remote in spec.remotes:
            data = {"ifindex": vrec.data["ifindex"], "device": vxlan}
            with self.ledger.step(owner, "fdb", remote, parent=vrec.id, data=data):
                self.net.add_remote(vrec.data["ifindex"], remote)
