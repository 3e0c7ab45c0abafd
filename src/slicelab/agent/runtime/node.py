"""NodeRuntime: the node agent's kernel layer behind one facade.

Everything it makes is written to the ledger first (see :mod:`slicelab.agent.ledger`) under
an owner: ``agent`` (control bridge, NAT table, cgroup parents, ip_forward),
``sliver:<id>`` or ``link:<id>``. ``ensure_*`` compare the spec's digest with the one the
owner was completely built from: equal and healthy means nothing to do; otherwise what
exists is torn down and built again. ``remove_*`` and :meth:`cleanup_all` unwind the
ledger, newest first, by id. All names carry the agent's prefix and all files live under
its state dir, so several agents can share a machine (each in its own network namespace).
"""

from __future__ import annotations

import ipaddress
import os
import socket
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

from slicelab.agent.ledger import Ledger, Record, unwind
from slicelab.agent.net import names, namespaces
from slicelab.agent.net.batch import Batch, Peer
from slicelab.agent.net.nat import Nft, dnat_rules, masquerade_rule, metadata_rule
from slicelab.agent.net.netlink import Netlink
from slicelab.agent.runtime import cgroups, process
from slicelab.agent.runtime.errors import KernelError
from slicelab.agent.runtime.mounts import is_mounted, mount_overlay
from slicelab.agent.runtime.removers import Deferred, make_removers, stop_groups
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


def _indexes(batch: Batch, wanted: list[tuple[Record, str, str]]) -> None:
    """Send ``batch`` plus a lookup of each name; store each ifindex in its record's data."""
    keys = [(record, key, batch.get_link(name), name) for record, key, name in wanted]
    found = batch.send()
    for record, key, seq, name in keys:
        if seq not in found:
            raise KernelError(f"link {name} did not appear")
        record.data[key] = found[seq]


class NodeRuntime:
    """Slivers and links of one agent. Not thread-safe: one caller at a time."""

    def __init__(self, *, state_dir: Path, prefix: str, control_subnet: str, host_ip: str,
                 cgroup_mode: Literal["auto", "v1", "v2"] = "auto",
                 stop_timeout: float = 5.0, metadata_port: int | None = None) -> None:
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
        self._launcher = process.Launcher()
        self._deferred = Deferred()
        self._removers = make_removers(self.net, self.nft, self._deferred)
        self.table = names.table_name(prefix)
        self.control_bridge = names.ifname(prefix, "k", "control")

    def close(self) -> None:
        self._launcher.reap()
        self.net.close()
        self.ledger.close()

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
        fresh = [spec for spec in specs if not self._current(spec)]
        if fresh:
            self._ensure_agent()
            self._build_slivers(fresh)
        return [self.status(spec.sliver_id) for spec in specs]

    def _current(self, spec: SliverSpec) -> bool:
        """Bring an intact sliver built from this spec up to date (True), or unwind it."""
        owner = _sliver(spec.sliver_id)
        digest = spec_digest(replace(spec, files=()))  # new identity files need no rebuild
        if self.ledger.owner_digest(owner) == digest and self._intact(spec.sliver_id):
            self._write_files(spec)
            if self.status(spec.sliver_id).state is not SliverState.RUNNING:
                self.start(spec.sliver_id)
            return True
        unwind(self.ledger, owner, self._removers)
        self.ledger.mark_owner(owner, digest=digest, complete=False)
        return False

    def remove_sliver(self, sliver_id: str) -> None:
        owner = _sliver(sliver_id)
        unwind(self.ledger, owner, self._removers)
        self.ledger.drop_owner(owner)
        self._launcher.reap()

    def remove_slivers(self, sliver_ids: Sequence[str]) -> None:
        """:meth:`remove_sliver` of many: their processes killed in one pass first, and
        their namespaces' veth ends awaited together at the end."""
        for sliver_id in sliver_ids:
            for group in self._groups(sliver_id):
                cgroups.signal_all(group)
        self._deferred.active = True
        try:
            for sliver_id in sliver_ids:
                self.remove_sliver(sliver_id)
        finally:
            self._deferred.active = False
            self._deferred.settle(self.net)

    def list_slivers(self) -> list[SliverStatus]:
        return [self.status(o.split(":", 1)[1]) for o in self.ledger.owners()
                if o.startswith("sliver:")]

    def status(self, sliver_id: str) -> SliverStatus:
        owner = _sliver(sliver_id)
        if not self.ledger.records(owner):
            return SliverStatus(sliver_id, SliverState.ABSENT)
        init = self._init_pid(sliver_id)
        complete = self.ledger.owner_digest(owner) is not None
        state = (SliverState.RUNNING if init else
                 SliverState.STOPPED if complete else SliverState.BROKEN)
        ports = self.ledger.find(owner, "nft-rules", self._comment(sliver_id))
        return SliverStatus(
            sliver_id, state, init_pid=init, control_ip=self.ledger.address_of(owner),
            netns=names.netns_name(self.prefix, sliver_id),
            ssh_port=ports.data.get("first_port") if ports else None,
            interfaces=tuple(r.data["inner"] for r in self._ifaces(owner)))

    def start(self, sliver_id: str) -> None:
        record = self._record(_sliver(sliver_id), "process", "init")
        if self._init_pid(sliver_id) is None:
            self._launch(sliver_id, record)

    def stop(self, sliver_id: str, *, timeout: float | None = None) -> None:
        """SIGTERM to every process of the sliver, SIGKILL after ``timeout`` seconds."""
        self._record(_sliver(sliver_id), "process", "init")
        stop_groups(self._groups(sliver_id),
                    timeout=self.stop_timeout if timeout is None else timeout)

    def restart(self, sliver_id: str) -> None:
        self.stop(sliver_id)
        self.start(sliver_id)

    def exec(self, sliver_id: str, argv: Sequence[str], *,
             timeout: float = 30.0) -> tuple[int, str, str]:
        """Run ``argv`` inside the sliver (all its namespaces, its root, its cgroups)."""
        init = self._init_pid(sliver_id)
        if init is None:
            raise NotFound(f"sliver {sliver_id} is not running")
        return process.run_inside(init_pid=init, groups=self._groups(sliver_id), argv=argv,
                                  timeout=timeout)

    # links ----------------------------------------------------------------------
    def ensure_link(self, spec: LinkSpec) -> LinkStatus:
        owner = _link(spec.link_id)
        digest = spec_digest(spec)
        bridge = names.ifname(self.prefix, "b", spec.link_id)
        record = self.ledger.find(owner, "link", bridge)
        intact = record is not None and self.net.has_link(record.data.get("ifindex", -1), bridge)
        if self.ledger.owner_digest(owner) != digest or not intact:
            unwind(self.ledger, owner, self._removers)
            self.ledger.mark_owner(owner, digest=digest, complete=False)
            self._build_link(spec, bridge)
            self.ledger.mark_owner(owner, digest=digest, complete=True)
        for iface in self._members(spec.link_id):
            self._attach(iface)
        return self.link_status(spec.link_id)

    def remove_link(self, link_id: str) -> None:
        owner = _link(link_id)
        unwind(self.ledger, owner, self._removers)
        self.ledger.drop_owner(owner)

    def link_status(self, link_id: str) -> LinkStatus:
        records = {r.name[len(self.prefix)]: r.name
                   for r in self.ledger.records(_link(link_id)) if r.kind == "link"}
        return LinkStatus(link_id, bool(records), records.get("b"), records.get("x"))

    def cleanup_all(self) -> None:
        """Remove everything this agent ever made (from the ledger), the agent's last."""
        owners = self.ledger.owners()
        self.remove_slivers([o.split(":", 1)[1] for o in owners if o.startswith("sliver:")])
        for owner in owners:
            if owner != _AGENT and not owner.startswith("sliver:"):
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
            self.net.add_address(rec.data["ifindex"],
                                 f"{self.gateway}/{self.subnet.prefixlen}")
        previous = Path(_FORWARD).read_text()
        if previous.strip() != "1":
            with self.ledger.step(_AGENT, "sysctl", _FORWARD, data={"previous": previous}):
                Path(_FORWARD).write_text("1")

    def _agent_nat(self) -> None:
        with self.ledger.step(_AGENT, "nft-table", self.table) as rec:
            rec.data["handle"] = self.nft.add_table(self.table)
        comment = f"{self.prefix}:masquerade"
        with self.ledger.step(_AGENT, "nft-rules", comment, data={"table": self.table}) as rec:
            rule = masquerade_rule(self.table, subnet=str(self.subnet),
                                   bridge=self.control_bridge, comment=comment)
            rec.data["rules"] = [("postrouting", self.nft.add_rule(rule))]
        if self.metadata_port:
            self._metadata_nat(self.metadata_port)

    def _metadata_nat(self, port: int) -> None:
        """169.254.169.254:80 from a sliver -> the metadata server on the gateway."""
        comment = f"{self.prefix}:metadata"
        with self.ledger.step(_AGENT, "nft-rules", comment, data={"table": self.table}) as rec:
            rule = metadata_rule(self.table, bridge=self.control_bridge,
                                 gateway=str(self.gateway), port=port, comment=comment)
            rec.data["rules"] = [("prerouting", self.nft.add_rule(rule))]

    # building a sliver ----------------------------------------------------------------
    def _build_slivers(self, specs: Sequence[SliverSpec]) -> None:
        """Record every intent in one transaction, make the objects, mark them done in one."""
        with self.ledger.transaction():
            plans = [self._plan(spec) for spec in specs]
        for spec, plan in zip(specs, plans, strict=True):
            inside = self.net.open_netns(plan.ns)
            try:
                self._sliver_network(spec, plan, inside)
            finally:
                inside.close()
        self._forward_ports(specs, plans)
        launched = [(spec, plan, self._prepare_and_start(spec)) for spec, plan in
                    zip(specs, plans, strict=True)]
        for spec, plan, launcher in launched:
            self._await_init(spec.sliver_id, plan.process, launcher)
        with self.ledger.transaction():
            for spec, plan in zip(specs, plans, strict=True):
                for record in plan.records():
                    self.ledger.finish(record)
                self.ledger.mark_owner(_sliver(spec.sliver_id), complete=True,
                                       digest=spec_digest(replace(spec, files=())))

    def _prepare_and_start(self, spec: SliverSpec) -> int:
        """Root file system, identity, cgroups and limits; then start the init."""
        merged = self._rootfs(spec)
        self._write_identity(spec, merged)
        for group in self.cgroups.dirs(spec.sliver_id):
            group.mkdir(exist_ok=True)
        self.cgroups.apply(spec.sliver_id, cgroups.Limits(
            cores=spec.cores, memory_bytes=spec.memory_mib << 20, pids_max=spec.pids_max))
        return self._start_init(spec.sliver_id)

    def _plan(self, spec: SliverSpec) -> _Plan:
        owner = _sliver(spec.sliver_id)
        ns = names.netns_name(self.prefix, spec.sliver_id)
        with self.ledger.transaction():
            netns = self.ledger.begin(owner, "netns", ns)
            address = self.ledger.take_address(owner, self._candidates())
            control = self.ledger.begin(
                owner, "link", names.ifname(self.prefix, "c", spec.sliver_id),
                parent=netns.id, data={"address": address})
            ifaces = [self._plan_iface(spec.sliver_id, iface, ns, netns)
                      for iface in spec.interfaces]
            base = self.state_dir / "slivers" / spec.sliver_id
            rules = self.ledger.begin(owner, "nft-rules", self._comment(spec.sliver_id), data={
                "table": self.table, "first_port": spec.ports.first_port})
            fs = [self.ledger.begin(owner, "dir", str(base)),
                  self.ledger.begin(owner, "mount", str(base / "root"))]
            groups = [str(g) for g in self.cgroups.dirs(spec.sliver_id)]
            fs += [self.ledger.begin(owner, "cgroup", g) for g in groups]
            process = self.ledger.begin(owner, "process", "init", data={"groups": groups})
        return _Plan(ns, netns, control, ifaces, rules, fs, process)

    def _plan_iface(self, sliver_id: str, iface: InterfaceSpec, ns: str,
                    netns: Record) -> _Iface:
        owner = _sliver(sliver_id)
        host = names.ifname(self.prefix, "v", f"{sliver_id}/{iface.link_id}")
        data = {"link_id": iface.link_id, "inner": iface.ifname, "ns_name": ns,
                "capacity": iface.capacity_mbps}
        record = self.ledger.begin(owner, "link", host, parent=netns.id, data=data)
        bridge = self.ledger.find(_link(iface.link_id), "link",
                                  names.ifname(self.prefix, "b", iface.link_id))
        if bridge is None or "ifindex" not in bridge.data:
            return _Iface(iface, record, None, [])
        capacity = iface.capacity_mbps or bridge.data.get("capacity")
        qdiscs = [self.ledger.begin(owner, "qdisc", name, parent=record.id, data={"ns": where})
                  for name, where in ((host, None), (iface.ifname, ns))] if capacity else []
        return _Iface(iface, record, bridge.data["ifindex"], qdiscs, capacity)

    def _sliver_network(self, spec: SliverSpec, plan: _Plan, inside: socket.socket) -> None:
        """Both veths of every interface in one host batch, the inner side in one more."""
        bridge = self._record(_AGENT, "link", self.control_bridge).data["ifindex"]
        host = self.net.batch()
        ns_fd = namespaces.open_fd(plan.ns)
        try:
            host.add_veth(plan.control.name, peer=Peer("eth0", ns_fd), master=bridge)
            for item in plan.ifaces:
                host.add_veth(item.record.name, mtu=LINK_MTU, master=item.bridge,
                              peer=Peer(item.spec.ifname, ns_fd, mtu=LINK_MTU,
                                        address=item.spec.mac))
            _indexes(host, [(plan.control, "ifindex", plan.control.name)] +
                     [(i.record, "ifindex", i.record.name) for i in plan.ifaces])
        finally:
            os.close(ns_fd)
        inner = self.net.batch(inside)
        _indexes(inner, [(plan.control, "inner_index", "eth0")] +
                 [(i.record, "inner_index", i.spec.ifname) for i in plan.ifaces])
        self._configure(spec, plan, host, inner)

    def _configure(self, spec: SliverSpec, plan: _Plan, host: Batch, inner: Batch) -> None:
        host.isolate_port(plan.control.data["ifindex"])
        inner.set_link(plan.control.data["inner_index"], up=True)
        inner.add_address(plan.control.data["inner_index"],
                          f"{plan.control.data['address']}/{self.subnet.prefixlen}")
        inner.default_route(str(self.gateway))
        for item in plan.ifaces:
            index, inside = item.record.data["ifindex"], item.record.data["inner_index"]
            inner.set_link(inside, up=True)
            if item.spec.ipv4:
                inner.add_address(inside, item.spec.ipv4)
            if item.capacity:
                host.shape(index, item.capacity)
                inner.shape(inside, item.capacity)
                for qdisc, ifindex in zip(item.qdiscs, (index, inside), strict=True):
                    qdisc.data["ifindex"] = ifindex
        host.send()
        inner.send()

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
        for name, index, where in ((iface.name, iface.data["ifindex"], None),
                                   (iface.data["inner"], iface.data["inner_index"], ns)):
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
        return [r for r in self.ledger.records(owner)
                if r.kind == "link" and "link_id" in r.data and r.done]

    def _forward_ports(self, specs: Sequence[SliverSpec], plans: Sequence[_Plan]) -> None:
        """The slivers' DNAT rules in one nft transaction; each record gets its handles."""
        rules = [(plan, rule) for spec, plan in zip(specs, plans, strict=True)
                 for chain in ("prerouting", "output")
                 for rule in dnat_rules(self.table, chain=chain, host_ip=self.host_ip,
                                        target=str(plan.control.data["address"]),
                                        first_port=spec.ports.first_port,
                                        count=spec.ports.count,
                                        comment=self._comment(spec.sliver_id))]
        handles = self.nft.add_rules([rule for _, rule in rules])
        for plan in plans:
            plan.rules.data["rules"] = []
        for (plan, rule), handle in zip(rules, handles, strict=True):
            plan.rules.data["rules"].append((rule["chain"], handle))

    def _rootfs(self, spec: SliverSpec) -> Path:
        base = self.state_dir / "slivers" / spec.sliver_id
        base.mkdir(parents=True, exist_ok=True)
        merged = base / "root"
        mount_overlay(lower=spec.image_dir, upper=base / "upper", work=base / "work",
                      target=merged)
        return merged

    def _write_files(self, spec: SliverSpec) -> None:
        root = self.state_dir / "slivers" / spec.sliver_id / "root"
        for name, text in spec.files:
            target = root / "etc/slicelab" / name
            if not target.exists() or target.read_text() != text:
                target.write_text(text)

    def _write_identity(self, spec: SliverSpec, root: Path) -> None:
        (root / "etc/hostname").write_text(spec.hostname + "\n")
        short = spec.hostname.split(".")[0]
        (root / "etc/hosts").write_text(f"127.0.0.1 localhost\n127.0.1.1 {spec.hostname} "
                                        f"{short}\n")
        (root / "etc/slicelab").mkdir(parents=True, exist_ok=True)
        for name, text in spec.files:
            (root / "etc/slicelab" / name).write_text(text)
        ssh = root / "root/.ssh"
        ssh.mkdir(mode=0o700, parents=True, exist_ok=True)
        keys = ssh / "authorized_keys"
        keys.write_text("".join(k.strip() + "\n" for k in spec.ssh_authorized_keys))
        keys.chmod(0o600)

    def _launch(self, sliver_id: str, record: Record) -> None:
        self._await_init(sliver_id, record, self._start_init(sliver_id))
        self.ledger.finish(record)

    def _start_init(self, sliver_id: str) -> int:
        """Start the sliver's init; the pid of its launcher."""
        base = self.state_dir / "slivers" / sliver_id
        if not is_mounted(base / "root"):
            raise KernelError(f"the root filesystem of sliver {sliver_id} is not mounted")
        self._launcher.reap()
        return self._launcher.start(netns_path=namespaces.path_of(
            names.netns_name(self.prefix, sliver_id)), rootfs=base / "root",
            groups=self._groups(sliver_id), log=base / "console.log")

    def _await_init(self, sliver_id: str, record: Record, launcher: int) -> None:
        """Wait until the init is PID 1 of its namespace; its pid and start time in record."""
        deadline = time.monotonic() + 10
        while (pid := self._init_pid(sliver_id)) is None:
            if time.monotonic() > deadline or not process.alive(launcher):
                raise KernelError(f"the init of sliver {sliver_id} did not start")
            time.sleep(0.0005)
        record.data.update(pid=pid, start=process.proc_start_time(pid))

    # helpers -------------------------------------------------------------------------
    def _groups(self, sliver_id: str) -> list[Path]:
        return self.cgroups.dirs(sliver_id)

    def _init_pid(self, sliver_id: str) -> int | None:
        return process.find_init(cgroups.procs(self._groups(sliver_id)[0]))

    def _intact(self, sliver_id: str) -> bool:
        base = self.state_dir / "slivers" / sliver_id
        return (self.net.netns_exists(names.netns_name(self.prefix, sliver_id))
                and is_mounted(base / "root")
                and all(g.exists() for g in self._groups(sliver_id)))

    def _record(self, owner: str, kind: str, name: str) -> Record:
        record = self.ledger.find(owner, kind, name)
        if record is None:
            raise NotFound(f"{owner} has no {kind} {name}")
        return record

    def _comment(self, sliver_id: str) -> str:
        return f"{self.prefix}:{sliver_id}:ports"

    def _candidates(self) -> Iterator[str]:
        return (str(h) for h in self.subnet.hosts() if h != self.gateway)

    # building a link -------------------------------------------------------------------
    def _build_link(self, spec: LinkSpec, bridge: str) -> None:
        owner = _link(spec.link_id)
        with self.ledger.step(owner, "link", bridge,
                              data={"capacity": spec.capacity_mbps}) as rec:
            rec.data["ifindex"] = self.net.add_bridge(bridge)
            self.net.configure(rec.data["ifindex"], mtu=LINK_MTU)
        if not spec.remotes:
            return
        vxlan = names.ifname(self.prefix, "x", spec.link_id)
        with self.ledger.step(owner, "link", vxlan) as vrec:
            vrec.data["ifindex"] = self.net.add_vxlan(vxlan, vni=spec.vni,
                                                      local_ip=spec.local_ip, mtu=LINK_MTU)
        self.net.configure(vrec.data["ifindex"], master=rec.data["ifindex"], state="up")
        for remote in spec.remotes:
            data = {"ifindex": vrec.data["ifindex"], "device": vxlan}
            with self.ledger.step(owner, "fdb", remote, parent=vrec.id, data=data):
                self.net.add_remote(vrec.data["ifindex"], remote)
