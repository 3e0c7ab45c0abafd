"""The few rtnetlink messages a build sends by the hundred, packed with ``struct``.

pyroute2's message classes encode any message, but at 0.1-0.5 ms of Python each, which
was about a millisecond of CPU per sliver built. The link and address requests below have
a fixed layout (``nlmsghdr``, ``ifinfomsg`` or ``ifaddrmsg``, then attributes), so they
are packed directly; the tests check them byte for byte against pyroute2's encoding.
Messages come out with sequence number 0 (:class:`~slicelab.agent.net.batch.Batch`
stamps its own) and the caller's flags.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Iterable

__all__ = [
    "IFLA_ADDRESS",
    "IFLA_GROUP",
    "IFLA_IFNAME",
    "IFLA_MASTER",
    "IFLA_MTU",
    "IFLA_NET_NS_FD",
    "RTM_DELLINK",
    "RTM_GETLINK",
    "RTM_NEWADDR",
    "RTM_NEWLINK",
    "address_message",
    "attr",
    "ifinfo",
    "link_message",
    "mac",
    "nested",
    "string",
    "u32",
    "veth_info",
    "vxlan_info",
]

RTM_NEWLINK, RTM_DELLINK, RTM_GETLINK, RTM_NEWADDR = 16, 17, 18, 20
IFLA_ADDRESS, IFLA_IFNAME, IFLA_MTU, IFLA_MASTER = 1, 3, 4, 10
IFLA_GROUP, IFLA_NET_NS_FD = 27, 28
_IFLA_LINKINFO, _IFLA_INFO_KIND, _IFLA_INFO_DATA = 18, 1, 2
_VETH_INFO_PEER = 1
_VXLAN_ID, _VXLAN_LOCAL, _VXLAN_LEARNING, _VXLAN_PORT = 1, 4, 7, 15
_IFA_ADDRESS, _IFA_LOCAL = 1, 2
_IFF_UP = 1
_HEADER = struct.Struct("=IHHII")
_IFINFO = struct.Struct("=BxHiII")
_IFADDR = struct.Struct("=BBBBI")
_ATTR = struct.Struct("=HH")


def attr(kind: int, payload: bytes) -> bytes:
    """One rtattr, padded to 4 bytes."""
    size = _ATTR.size + len(payload)
    return _ATTR.pack(size, kind) + payload + b"\0" * (-size % 4)


def nested(kind: int, attrs: Iterable[bytes]) -> bytes:
    return attr(kind, b"".join(attrs))


def string(kind: int, value: str) -> bytes:
    return attr(kind, value.encode() + b"\0")


def u32(kind: int, value: int) -> bytes:
    return attr(kind, struct.pack("=I", value))


def mac(kind: int, value: str) -> bytes:
    return attr(kind, bytes.fromhex(value.replace(":", "")))


def ifinfo(*, index: int = 0, up: bool | None = None) -> bytes:
    """An ``ifinfomsg``: ``up`` sets or clears IFF_UP (None: leaves the flags alone)."""
    flags, change = (0, 0) if up is None else (_IFF_UP if up else 0, _IFF_UP)
    return _IFINFO.pack(socket.AF_UNSPEC, 0, index, flags, change)


def _message(kind: int, flags: int, body: bytes) -> bytes:
    return _HEADER.pack(_HEADER.size + len(body), kind, flags, 0, 0) + body


def link_message(
    kind: int, flags: int, attrs: Iterable[bytes], *, index: int = 0, up: bool | None = None
) -> bytes:
    """An RTM_NEWLINK, RTM_DELLINK or RTM_GETLINK request."""
    return _message(kind, flags, ifinfo(index=index, up=up) + b"".join(attrs))


def veth_info(peer: Iterable[bytes]) -> bytes:
    """IFLA_LINKINFO of a veth whose peer has the attributes ``peer``."""
    data = nested(_VETH_INFO_PEER, [ifinfo(), *peer])
    return _linkinfo("veth", [data])


def vxlan_info(*, vni: int, port: int, local_ip: str | None) -> bytes:
    """IFLA_LINKINFO of a VXLAN device that learns, on UDP ``port``."""
    data = [u32(_VXLAN_ID, vni), attr(_VXLAN_PORT, struct.pack("!H", port))]
    data.append(attr(_VXLAN_LEARNING, b"\1"))
    if local_ip is not None:
        data.append(attr(_VXLAN_LOCAL, ipaddress.IPv4Address(local_ip).packed))
    return _linkinfo("vxlan", data)


def _linkinfo(kind: str, data: Iterable[bytes]) -> bytes:
    return nested(_IFLA_LINKINFO, [string(_IFLA_INFO_KIND, kind), nested(_IFLA_INFO_DATA, data)])


def address_message(index: int, cidr: str, flags: int) -> bytes:
    """An RTM_NEWADDR of the IPv4 address ``cidr`` on link ``index``."""
    packed, prefixlen = _ipv4_interface(cidr)
    body = _IFADDR.pack(socket.AF_INET, prefixlen, 0, 0, index)
    body += attr(_IFA_LOCAL, packed) + attr(_IFA_ADDRESS, packed)
    return _message(RTM_NEWADDR, flags, body)


def _ipv4_interface(cidr: str) -> tuple[bytes, int]:
    """The packed address and prefix length of ``cidr``; ``a.b.c.d/n`` is parsed cheaply,
    any other form by :mod:`ipaddress` (which raises ValueError on a bad one)."""
    ip, _, length = cidr.partition("/")
    if length.isdigit() and int(length) <= 32 and ip.count(".") == 3:
        try:
            return socket.inet_pton(socket.AF_INET, ip), int(length)
        except OSError:
            pass
    iface = ipaddress.IPv4Interface(cidr)
    return iface.ip.packed, iface.network.prefixlen
