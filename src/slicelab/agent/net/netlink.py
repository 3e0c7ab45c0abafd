"""Netlink operations through pyroute2: namespaces, veth, bridges, VXLAN, addresses, tbf.

Works in whatever network namespace the calling process is in ("the host side"); the
sliver side is reached by the namespace's name under /var/run/netns, through a socket
opened inside it by a thread (:mod:`slicelab.agent.net.namespaces`, no helper process).
Bulk work goes through :meth:`Netlink.batch` (:mod:`slicelab.agent.net.batch`). Every call
that removes takes an ifindex and the name it had, and does nothing if it is already gone.
"""

from __future__ import annotations

import errno
import ipaddress
import secrets
import socket
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from slicelab.agent.net import namespaces
from slicelab.agent.net.batch import LOOPBACK, Batch
from slicelab.agent.net.shaping import tbf_params
from slicelab.agent.runtime.errors import KernelError

__all__ = ["Netlink"]

_GONE = {errno.ENODEV, errno.ENOENT, errno.ESRCH, errno.EINVAL}
_GROUP_BASE = 1 << 30  # netdev groups used for bulk deletion: random, above hand-made ones


class Netlink:
    """The host side's netlink socket plus short-lived ones into named namespaces."""

    def __init__(self) -> None:
        self._ipr = IPRoute()
        self._raw = namespaces.route_socket()

    def close(self) -> None:
        self._ipr.close()
        self._raw.close()

    @contextmanager
    def _in(self, ns: str | None) -> Iterator[Any]:
        if ns is None:
            yield self._ipr
            return
        sock = IPRoute(use_socket=namespaces.run_in(ns, namespaces.route_socket))
        try:
            yield sock
        finally:
            sock.close()

    def batch(self, sock: socket.socket | None = None) -> Batch:
        """A request batch on ``sock`` (a socket from :meth:`open_netns`), else the host's."""
        return Batch(self._raw if sock is None else sock)

    # namespaces -------------------------------------------------------------
    def netns_exists(self, name: str) -> bool:
        return namespaces.exists(name)

    def open_netns(self, name: str, *, lo_up: bool = True) -> socket.socket:
        """A route socket inside namespace ``name``, made if it is missing; lo up unless
        ``lo_up`` is False (then the caller's first batch inside sets it up). Thread-safe:
        it uses only the socket it makes."""
        if self.netns_exists(name):
            sock = namespaces.run_in(name, namespaces.route_socket)
        else:
            sock = namespaces.create(name)
        if not lo_up:
            return sock
        inside = Batch(sock)
        inside.set_link(LOOPBACK, up=True)
        try:
            inside.send()
        except BaseException:
            sock.close()
            raise
        return sock

    def create_netns(self, name: str) -> None:
        self.open_netns(name).close()

    def delete_netns(self, name: str) -> None:
        namespaces.remove(name)

    def delete_netns_many(self, names: Sequence[str]) -> None:
        namespaces.remove_many(names)

    # links ------------------------------------------------------------------
    def lookup(self, name: str, *, ns: str | None = None) -> int | None:
        with self._in(ns) as sock:
            try:
                found = sock.link("get", ifname=name)
            except NetlinkError as exc:
                if exc.code in _GONE:
                    return None
                raise
        return int(found[0]["index"]) if found else None

    def has_link(self, ifindex: int, name: str, *, ns: str | None = None) -> bool:
        """True if ``ifindex`` exists and still has ``name`` (guards against reuse)."""
        with self._in(ns) as sock:
            try:
                link = sock.link("get", index=ifindex)[0]
            except NetlinkError as exc:
                if exc.code in _GONE:
                    return False
                raise
        return bool(link.get_attr("IFLA_IFNAME") == name)

    def delete_link(self, ifindex: int | None, name: str, *, ns: str | None = None) -> None:
        """Delete by ifindex (by name only when the ifindex was never recorded)."""
        if ns is not None and not self.netns_exists(ns):
            return
        index = ifindex if ifindex is not None else self.lookup(name, ns=ns)
        if index is None or not self.has_link(index, name, ns=ns):
            return
        with self._in(ns) as sock:
            try:
                sock.link("del", index=index)
            except NetlinkError as exc:
                if exc.code not in _GONE:
                    raise KernelError(f"cannot delete link {name}: {exc}") from exc

    def present(self, links: Sequence[tuple[int | None, str]]) -> list[tuple[int, str]]:
        """Those host-side ``(ifindex, name)`` that exist with that name (and that ifindex,
        when one is given), asked in one batch; their ifindex and name."""
        if not links:
            return []
        batch = self.batch()
        asked = [(batch.get_link(name), index, name) for index, name in links]
        found = batch.send()
        return [
            (found[seq], name)
            for seq, index, name in asked
            if seq in found and index in (None, found[seq])
        ]

    def delete_links(self, links: Sequence[tuple[int | None, str]]) -> None:
        """Delete many host-side links at once; those already gone are skipped.

        Each link still there under its recorded ifindex and name is moved into a fresh
        random netdev group, and one ``RTM_DELLINK`` for that group removes them all in one
        ``unregister_netdevice_many`` (one RCU grace period, not one per link; a veth takes
        its peer with it). A crash in between leaves links that the ledger still names.
        """
        present = self.present(links)
        if not present:
            return
        group = _GROUP_BASE + secrets.randbelow(_GROUP_BASE - 1)
        batch = self.batch()
        for index, _ in present:
            batch.set_group(index, group)
        batch.delete_group(group)
        batch.send()

    def wait_gone(self, ifindex: int, name: str, *, timeout: float = 3.0) -> bool:
        """Wait for a host-side link to vanish (its peer's namespace is being freed)."""
        deadline = time.monotonic() + timeout
        while self.has_link(ifindex, name):
            if time.monotonic() > deadline:
                return False
            time.sleep(0.002)
        return True

    def add_bridge(self, name: str) -> int:
        index = self.lookup(name)
        if index is None:
            self._ipr.link("add", ifname=name, kind="bridge")
            index = self.lookup(name)
        assert index is not None
        self._ipr.link("set", index=index, state="up")
        return index

    def add_vxlan(self, name: str, *, vni: int, local_ip: str | None, mtu: int) -> int:
        options: dict[str, Any] = {"vxlan_id": vni, "vxlan_port": 4789, "vxlan_learning": 1}
        if local_ip is not None:
            options["vxlan_local"] = local_ip
        if self.lookup(name) is None:
            self._ipr.link("add", ifname=name, kind="vxlan", **options)
        index = self.lookup(name)
        assert index is not None
        self._ipr.link("set", index=index, mtu=mtu)
        return index

    def add_remote(self, vxlan: int, remote_ip: str) -> None:
        """A head-end replication entry: flood unknown/broadcast frames to ``remote_ip``."""
        try:
            self._ipr.fdb("append", ifindex=vxlan, lladdr="00:00:00:00:00:00", dst=remote_ip)
        except NetlinkError as exc:
            if exc.code != errno.EEXIST:
                raise KernelError(f"cannot add VXLAN remote {remote_ip}: {exc}") from exc

    def del_remote(self, vxlan: int, remote_ip: str) -> None:
        self._ipr.fdb("del", ifindex=vxlan, lladdr="00:00:00:00:00:00", dst=remote_ip)

    def add_veth(self, host: str, *, peer: str, ns: str) -> tuple[int, int]:
        """A veth pair: ``host`` here, ``peer`` created straight inside namespace ``ns``."""
        if self.lookup(host) is None:
            self._ipr.link("add", ifname=host, kind="veth", peer={"ifname": peer, "net_ns_fd": ns})
        host_index = self.lookup(host)
        peer_index = self.lookup(peer, ns=ns)
        if host_index is None or peer_index is None:
            raise KernelError(f"veth {host}/{peer} did not appear")
        return host_index, peer_index

    def configure(self, index: int, *, ns: str | None = None, **attrs: Any) -> None:
        """Set link attributes (``state``, ``mtu``, ``address``, ``master``, ``ifname``)."""
        with self._in(ns) as sock:
            sock.link("set", index=index, **attrs)

    def isolate_port(self, index: int) -> None:
        """Bridge port isolation: isolated ports reach the bridge but not each other."""
        self._ipr.brport("set", index=index, isolated=1)

    def add_address(self, index: int, cidr: str, *, ns: str | None = None) -> None:
        iface = ipaddress.IPv4Interface(cidr)
        with self._in(ns) as sock:
            try:
                sock.addr(
                    "add", index=index, address=str(iface.ip), prefixlen=iface.network.prefixlen
                )
            except NetlinkError as exc:
                if exc.code != errno.EEXIST:
                    raise KernelError(f"cannot add address {cidr}: {exc}") from exc

    def add_default_route(self, gateway: str, *, ns: str) -> None:
        with self._in(ns) as sock:
            sock.route("replace", dst="0.0.0.0/0", gateway=gateway)

    def shape(self, index: int, capacity_mbps: float, *, ns: str | None = None) -> None:
        """Replace the root qdisc of ``index`` with a tbf at ``capacity_mbps`` (egress)."""
        params = tbf_params(capacity_mbps)
        with self._in(ns) as sock:
            sock.tc(
                "replace",
                "tbf",
                index=index,
                handle="1:",
                rate=f"{params.rate_bps}bit",
                burst=params.burst_bytes,
                latency=f"{params.latency_ms}ms",
            )

    def unshape(self, index: int, name: str, *, ns: str | None = None) -> None:
        if (ns is not None and not self.netns_exists(ns)) or not self.has_link(index, name, ns=ns):
            return
        with self._in(ns) as sock:
            try:
                sock.tc("del", index=index, handle="1:", root=True)
            except NetlinkError as exc:
                if exc.code not in (*_GONE, errno.ENOENT):
                    raise KernelError(f"cannot remove qdisc on {name}: {exc}") from exc

    def qdisc_kind(self, index: int, *, ns: str | None = None) -> str | None:
        with self._in(ns) as sock:
            for msg in sock.get_qdiscs(index=index):
                if msg["parent"] == 0xFFFFFFFF:
                    return str(msg.get_attr("TCA_KIND"))
        return None
