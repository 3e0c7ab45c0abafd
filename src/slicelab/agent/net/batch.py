"""Batched rtnetlink requests: many messages in one ``sendmsg``, one ack each.

Messages are encoded by pyroute2's message classes (``ifinfmsg``, ``ifaddrmsg``) or, for
requests that need its helpers (tbf rate tables, bridge-port options, routes), compiled
once by ``pyroute2.IPBatch`` as a template whose ifindex is filled in per use. The kernel
handles the messages of one send in order and acks each; :meth:`Batch.send` raises
:class:`KernelError` naming the first request that failed with an errno it was not told to
accept.

A veth's peer can be made directly inside another namespace (``IFLA_NET_NS_FD``) with its
final name, MTU and address (not up: a veth end cannot open before its peer exists, so the
peer is set up from inside its namespace, where :meth:`Batch.get_link` learns its ifindex).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from pyroute2 import IPBatch
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from slicelab.agent.net.shaping import tbf_params
from slicelab.agent.runtime.errors import KernelError

__all__ = ["LOOPBACK", "Batch", "Peer"]

LOOPBACK = 1  # the ifindex of lo in every network namespace
_IFF_UP = 1
_NLMSG_ERROR = 2
_HEADER = struct.Struct("=IHHII")
_INDEX_AT = 20  # ifinfomsg, ifaddrmsg and tcmsg all keep the ifindex right after nlmsghdr
_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_VXLAN_PORT = 4789
_CHUNK = 128  # messages per send: their answers must fit the receive buffer


@dataclass(frozen=True)
class Peer:
    """The far end of a veth: made inside the namespace open as ``ns_fd``."""

    ifname: str
    ns_fd: int
    mtu: int | None = None
    address: str | None = None


@dataclass
class _Request:
    what: str
    accept: frozenset[int]
    reply: bool = False


@dataclass
class Batch:
    """Requests collected for one netlink socket, sent together by :meth:`send`."""

    sock: socket.socket
    _messages: list[tuple[int, bytes]] = field(default_factory=list)
    _requests: dict[int, _Request] = field(default_factory=dict)
    _seq: int = 0

    def __len__(self) -> int:
        return len(self._messages)

    def _add(self, data: bytes | bytearray, what: str, *, accept: tuple[int, ...] = (),
             reply: bool = False) -> int:
        self._seq += 1
        message = bytearray(data)
        struct.pack_into("=II", message, 8, self._seq, 0)
        self._messages.append((self._seq, bytes(message)))
        self._requests[self._seq] = _Request(what, frozenset(accept), reply)
        return self._seq

    def _link_message(self, *, index: int = 0, up: bool | None = None,
                      attrs: list[tuple[str, Any]], flags: int) -> bytes:
        msg = ifinfmsg()
        msg["index"] = index
        if up is not None:
            msg["flags"], msg["change"] = (_IFF_UP if up else 0), _IFF_UP
        msg["attrs"] = attrs
        msg["header"]["type"] = RTM_NEWLINK
        msg["header"]["flags"] = flags
        msg.encode()
        return bytes(msg.data)

    def add_veth(self, name: str, *, peer: Peer, mtu: int | None = None,
                 master: int | None = None, up: bool = True,
                 address: str | None = None) -> None:
        """A veth pair: ``name`` in this socket's namespace, ``peer`` in its own."""
        peer_attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", peer.ifname),
                                             ("IFLA_NET_NS_FD", peer.ns_fd)]
        peer_attrs += [(k, v) for k, v in (("IFLA_MTU", peer.mtu),
                                           ("IFLA_ADDRESS", peer.address)) if v is not None]
        info = {"attrs": [("VETH_INFO_PEER", {"attrs": peer_attrs})]}
        attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name), ("IFLA_LINKINFO", {"attrs": [
            ("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", info)]})]
        attrs += [(k, v) for k, v in (("IFLA_MTU", mtu), ("IFLA_MASTER", master),
                                      ("IFLA_ADDRESS", address)) if v is not None]
        self._add(self._link_message(up=up, attrs=attrs, flags=_CREATE), f"add veth {name}")

    def add_vxlan(self, name: str, *, ns_fd: int, vni: int, local_ip: str | None, mtu: int,
                  address: str | None = None) -> None:
        """A VXLAN device made straight inside the namespace open as ``ns_fd`` (it dies with
        it); its UDP socket stays in this socket's namespace, the underlay's."""
        data: list[tuple[str, Any]] = [("IFLA_VXLAN_ID", vni), ("IFLA_VXLAN_PORT", _VXLAN_PORT),
                                       ("IFLA_VXLAN_LEARNING", 1)]
        if local_ip is not None:
            data.append(("IFLA_VXLAN_LOCAL", local_ip))
        attrs: list[tuple[str, Any]] = [("IFLA_IFNAME", name), ("IFLA_NET_NS_FD", ns_fd),
                                        ("IFLA_MTU", mtu), ("IFLA_LINKINFO", {"attrs": [
                                            ("IFLA_INFO_KIND", "vxlan"),
                                            ("IFLA_INFO_DATA", {"attrs": data})]})]
        if address is not None:
            attrs.append(("IFLA_ADDRESS", address))
        self._add(self._link_message(attrs=attrs, flags=_CREATE), f"add vxlan {name}")

    def add_remote(self, index: int, remote_ip: str) -> None:
        """A head-end replication entry on VXLAN ``index``: flood to ``remote_ip``."""
        self._add(_stamp(_template("fdb", remote_ip), index), f"VXLAN remote {remote_ip}",
                  accept=(errno.EEXIST,))

    def set_link(self, index: int, *, up: bool | None = None, mtu: int | None = None,
                 master: int | None = None, accept: tuple[int, ...] = ()) -> None:
        attrs = [(k, v) for k, v in (("IFLA_MTU", mtu), ("IFLA_MASTER", master))
                 if v is not None]
        data = self._link_message(index=index, up=up, attrs=attrs,
                                  flags=NLM_F_REQUEST | NLM_F_ACK)
        self._add(data, f"set link {index}", accept=accept)

    def set_group(self, index: int, group: int) -> None:
        """Move link ``index`` into netdev group ``group`` (gone already is fine)."""
        data = self._link_message(index=index, attrs=[("IFLA_GROUP", group)],
                                  flags=NLM_F_REQUEST | NLM_F_ACK)
        self._add(data, f"set group of link {index}", accept=(errno.ENODEV,))

    def delete_group(self, group: int) -> None:
        """Delete every link of netdev group ``group`` at once (one kernel batch, so one
        RCU grace period for all of them instead of one per link)."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_GROUP", group)]
        msg["header"]["type"] = RTM_DELLINK
        msg["header"]["flags"] = NLM_F_REQUEST | NLM_F_ACK
        msg.encode()
        self._add(msg.data, f"delete link group {group}", accept=(errno.ENODEV,))

    def get_link(self, name: str) -> int:
        """Ask for link ``name``; :meth:`send` returns its ifindex under the returned key."""
        msg = ifinfmsg()
        msg["attrs"] = [("IFLA_IFNAME", name)]
        msg["header"]["type"] = RTM_GETLINK
        msg["header"]["flags"] = NLM_F_REQUEST
        msg.encode()
        return self._add(msg.data, f"get link {name}", accept=(errno.ENODEV,), reply=True)

    def add_address(self, index: int, cidr: str) -> None:
        iface = ipaddress.IPv4Interface(cidr)
        msg = ifaddrmsg()
        msg["family"], msg["index"] = socket.AF_INET, index
        msg["prefixlen"] = iface.network.prefixlen
        msg["attrs"] = [("IFA_LOCAL", str(iface.ip)), ("IFA_ADDRESS", str(iface.ip))]
        msg["header"]["type"] = RTM_NEWADDR
        msg["header"]["flags"] = _CREATE
        msg.encode()
        self._add(msg.data, f"add address {cidr}", accept=(errno.EEXIST,))

    def default_route(self, gateway: str) -> None:
        self._add(_template("route", gateway), f"default route via {gateway}")

    def isolate_port(self, index: int) -> None:
        self._add(_stamp(_template("isolate", ""), index), f"isolate bridge port {index}")

    def shape(self, index: int, capacity_mbps: float) -> None:
        """A root tbf at ``capacity_mbps`` on ``index`` (replacing what is there)."""
        self._add(_stamp(_template("tbf", str(capacity_mbps)), index), f"tbf on {index}")

    def send(self) -> dict[int, int]:
        """Send everything; the ifindex answered to each :meth:`get_link` (absent: none)."""
        found: dict[int, int] = {}
        failures: list[str] = []
        try:
            for start in range(0, len(self._messages), _CHUNK):
                chunk = self._messages[start:start + _CHUNK]
                self.sock.send(b"".join(data for _, data in chunk))
                failures += self._collect({seq for seq, _ in chunk}, found)
        finally:
            self._messages, self._requests = [], {}
        if failures:
            raise KernelError(failures[0])
        return found

    def _collect(self, pending: set[int], found: dict[int, int]) -> list[str]:
        failures: list[str] = []
        while pending:
            buffer = self.sock.recv(1 << 20)
            for seq, kind, body in _messages(buffer):
                if seq not in pending:
                    continue
                pending.discard(seq)
                if kind == _NLMSG_ERROR:
                    failures += filter(None, [self._failure(seq, body)])
                elif self._requests[seq].reply:
                    found[seq] = struct.unpack_from("=i", body, 4)[0]
        return failures

    def _failure(self, seq: int, body: bytes) -> str | None:
        code = -struct.unpack_from("=i", body, 0)[0]
        request = self._requests[seq]
        if code == 0 or code in request.accept:
            return None
        return f"netlink: {request.what}: {os.strerror(code)}"


def _messages(buffer: bytes) -> list[tuple[int, int, bytes]]:
    found, offset = [], 0
    while offset + _HEADER.size <= len(buffer):
        length, kind, _flags, seq, _pid = _HEADER.unpack_from(buffer, offset)
        if length < _HEADER.size:
            break
        found.append((seq, kind, buffer[offset + _HEADER.size: offset + length]))
        offset += (length + 3) & ~3
    return found


def _stamp(template: bytes, index: int) -> bytearray:
    message = bytearray(template)
    struct.pack_into("=i", message, _INDEX_AT, index)
    return message


@lru_cache(maxsize=64)
def _template(kind: str, value: str) -> bytes:
    """A request compiled once by pyroute2 (ifindex 1, to be stamped)."""
    compiler = _compiler()
    compiler.reset()
    if kind == "tbf":
        params = tbf_params(float(value))
        compiler.tc("replace", "tbf", index=1, handle="1:", rate=f"{params.rate_bps}bit",
                    burst=params.burst_bytes, latency=f"{params.latency_ms}ms")
    elif kind == "fdb":
        compiler.fdb("append", ifindex=1, lladdr="00:00:00:00:00:00", dst=value)
    elif kind == "isolate":
        compiler.brport("set", index=1, isolated=1)
    else:
        compiler.route("replace", dst="0.0.0.0/0", gateway=value)
    data = bytearray(compiler.batch)
    struct.pack_into("=H", data, 6, _HEADER.unpack_from(data, 0)[2] | NLM_F_ACK)
    return bytes(data)


@lru_cache(maxsize=1)
def _compiler() -> IPBatch:
    return IPBatch()
