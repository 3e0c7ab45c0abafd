"""Batched rtnetlink requests: many messages in one ``sendmsg``, one ack each.

Link and address requests are packed by :mod:`slicelab.agent.net.rtmsg` (pyroute2's
message classes cost 0.1-0.5 ms of Python each); requests that need pyroute2's helpers
(tbf rate tables, bridge-port options, routes) are compiled once by ``pyroute2.IPBatch``
as a template whose ifindex is filled in per use. The kernel handles the messages of one
send in order and acks each; :meth:`Batch.send` raises :class:`KernelError` naming the
first request that failed with an errno it was not told to accept.

A veth's ends can be made directly inside other namespaces (``IFLA_NET_NS_FD``, for the
peer and for the device itself) with their final names, MTU and addresses (the peer not
up: a veth end cannot open before its peer exists, so it is set up from inside its
namespace, where :meth:`Batch.get_link` learns its ifindex).
"""

from __future__ import annotations

import errno
import os
import socket
import struct
from dataclasses import dataclass, field
from functools import lru_cache

from pyroute2 import IPBatch
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST

from slicelab.agent.net import rtmsg
from slicelab.agent.net.shaping import tbf_params
from slicelab.agent.runtime.errors import KernelError

__all__ = ["LOOPBACK", "Batch", "Peer"]

LOOPBACK = 1  # the ifindex of lo in every network namespace
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

    def add_veth(self, name: str, *, peer: Peer, mtu: int | None = None,
                 master: int | None = None, up: bool = True,
                 address: str | None = None, ns_fd: int | None = None) -> None:
        """A veth pair: ``name`` in this socket's namespace (or in the one open as
        ``ns_fd``), ``peer`` in its own."""
        peer_attrs = [rtmsg.string(rtmsg.IFLA_IFNAME, peer.ifname),
                      rtmsg.u32(rtmsg.IFLA_NET_NS_FD, peer.ns_fd), *_options(peer.mtu, None,
                                                                           peer.address)]
        attrs = [rtmsg.string(rtmsg.IFLA_IFNAME, name), rtmsg.veth_info(peer_attrs),
                 *_options(mtu, master, address)]
        if ns_fd is not None:
            attrs.append(rtmsg.u32(rtmsg.IFLA_NET_NS_FD, ns_fd))
        data = rtmsg.link_message(rtmsg.RTM_NEWLINK, _CREATE, attrs, up=up)
        self._add(data, f"add veth {name}")

    def add_vxlan(self, name: str, *, ns_fd: int, vni: int, local_ip: str | None, mtu: int,
                  address: str | None = None) -> None:
        """A VXLAN device made straight inside the namespace open as ``ns_fd`` (it dies with
        it); its UDP socket stays in this socket's namespace, the underlay's."""
        attrs = [rtmsg.string(rtmsg.IFLA_IFNAME, name), rtmsg.u32(rtmsg.IFLA_NET_NS_FD, ns_fd),
                 rtmsg.u32(rtmsg.IFLA_MTU, mtu),
                 rtmsg.vxlan_info(vni=vni, port=_VXLAN_PORT, local_ip=local_ip),
                 *_options(None, None, address)]
        self._add(rtmsg.link_message(rtmsg.RTM_NEWLINK, _CREATE, attrs), f"add vxlan {name}")

    def add_remote(self, index: int, remote_ip: str) -> None:
        """A head-end replication entry on VXLAN ``index``: flood to ``remote_ip``."""
        self._add(_stamp(_template("fdb", remote_ip), index), f"VXLAN remote {remote_ip}",
                  accept=(errno.EEXIST,))

    def set_link(self, index: int, *, up: bool | None = None, mtu: int | None = None,
                 master: int | None = None, accept: tuple[int, ...] = ()) -> None:
        data = rtmsg.link_message(rtmsg.RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK,
                                  _options(mtu, master, None), index=index, up=up)
        self._add(data, f"set link {index}", accept=accept)

    def set_group(self, index: int, group: int) -> None:
        """Move link ``index`` into netdev group ``group`` (gone already is fine)."""
        data = rtmsg.link_message(rtmsg.RTM_NEWLINK, NLM_F_REQUEST | NLM_F_ACK,
                                  [rtmsg.u32(rtmsg.IFLA_GROUP, group)], index=index)
        self._add(data, f"set group of link {index}", accept=(errno.ENODEV,))

    def delete_group(self, group: int) -> None:
        """Delete every link of netdev group ``group`` at once (one kernel batch, so one
        RCU grace period for all of them instead of one per link)."""
        data = rtmsg.link_message(rtmsg.RTM_DELLINK, NLM_F_REQUEST | NLM_F_ACK,
                                  [rtmsg.u32(rtmsg.IFLA_GROUP, group)])
        self._add(data, f"delete link group {group}", accept=(errno.ENODEV,))

    def get_link(self, name: str) -> int:
        """Ask for link ``name``; :meth:`send` returns its ifindex under the returned key."""
        data = rtmsg.link_message(rtmsg.RTM_GETLINK, NLM_F_REQUEST,
                                  [rtmsg.string(rtmsg.IFLA_IFNAME, name)])
        return self._add(data, f"get link {name}", accept=(errno.ENODEV,), reply=True)

    def add_address(self, index: int, cidr: str) -> None:
        self._add(rtmsg.address_message(index, cidr, _CREATE), f"add address {cidr}",
                  accept=(errno.EEXIST,))

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


def _options(mtu: int | None, master: int | None, address: str | None) -> list[bytes]:
    """The optional link attributes that are set."""
    found = [] if mtu is None else [rtmsg.u32(rtmsg.IFLA_MTU, mtu)]
    if master is not None:
        found.append(rtmsg.u32(rtmsg.IFLA_MASTER, master))
    if address is not None:
        found.append(rtmsg.mac(rtmsg.IFLA_ADDRESS, address))
    return found


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
