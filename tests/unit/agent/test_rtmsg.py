"""The struct-packed rtnetlink messages are byte for byte what pyroute2 encodes."""

from __future__ import annotations

import socket
import struct
from typing import Any

import pytest
from pyroute2.netlink import NLM_F_ACK, NLM_F_CREATE, NLM_F_EXCL, NLM_F_REQUEST
from pyroute2.netlink.rtnl.ifaddrmsg import ifaddrmsg
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from slicelab.agent.net import rtmsg
from slicelab.agent.net.batch import Batch, Peer

_CREATE = NLM_F_REQUEST | NLM_F_ACK | NLM_F_CREATE | NLM_F_EXCL
_SET = NLM_F_REQUEST | NLM_F_ACK


def _pyroute2_link(kind: int, flags: int, attrs: list[tuple[str, Any]], *, index: int = 0,
                   up: bool | None = None) -> bytes:
    msg = ifinfmsg()
    msg["index"] = index
    if up is not None:
        msg["flags"], msg["change"] = (1 if up else 0), 1
    msg["attrs"] = attrs
    msg["header"]["type"] = kind
    msg["header"]["flags"] = flags
    msg.encode()
    return bytes(msg.data)


def _veth(peer: list[tuple[str, Any]]) -> tuple[str, Any]:
    info = {"attrs": [("VETH_INFO_PEER", {"attrs": peer})]}
    return ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "veth"), ("IFLA_INFO_DATA", info)]})


class _Sink:
    """Collects what a batch sends (acks are not needed: only the bytes are checked)."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)


def _sent(build: Any) -> bytes:
    """The one message ``build(batch)`` adds, with its sequence number zeroed."""
    batch = Batch(_Sink())  # type: ignore[arg-type]
    build(batch)
    ((_, data),) = batch._messages
    message = bytearray(data)
    struct.pack_into("=I", message, 8, 0)
    return bytes(message)


@pytest.mark.parametrize("name", ["c", "zc0123456789a", "eth0"])  # odd and even padding
def test_control_veth_with_master_and_peer_in_a_namespace(name: str) -> None:
    expected = _pyroute2_link(rtmsg.RTM_NEWLINK, _CREATE, [
        ("IFLA_IFNAME", name), _veth([("IFLA_IFNAME", "eth0"), ("IFLA_NET_NS_FD", 7)]),
        ("IFLA_MASTER", 9)], up=True)
    assert _sent(lambda b: b.add_veth(name, peer=Peer("eth0", 7), master=9)) == expected


def test_veth_with_mtu_and_addresses_on_both_ends_made_in_two_namespaces() -> None:
    peer = [("IFLA_IFNAME", "exp1"), ("IFLA_NET_NS_FD", 12), ("IFLA_MTU", 1450),
            ("IFLA_ADDRESS", "02:aa:bb:cc:dd:ee")]
    expected = _pyroute2_link(rtmsg.RTM_NEWLINK, _CREATE, [
        ("IFLA_IFNAME", "exp0"), _veth(peer), ("IFLA_MTU", 1450),
        ("IFLA_ADDRESS", "02:00:00:00:00:01"), ("IFLA_NET_NS_FD", 11)], up=False)
    made = _sent(lambda b: b.add_veth(
        "exp0", ns_fd=11, mtu=1450, address="02:00:00:00:00:01", up=False,
        peer=Peer("exp1", 12, mtu=1450, address="02:aa:bb:cc:dd:ee")))
    assert made == expected


@pytest.mark.parametrize("local_ip", ["192.168.214.1", None])
def test_vxlan_inside_a_namespace(local_ip: str | None) -> None:
    data: list[tuple[str, Any]] = [("IFLA_VXLAN_ID", 1001), ("IFLA_VXLAN_PORT", 4789),
                                   ("IFLA_VXLAN_LEARNING", 1)]
    if local_ip is not None:
        data.append(("IFLA_VXLAN_LOCAL", local_ip))
    expected = _pyroute2_link(rtmsg.RTM_NEWLINK, _CREATE, [
        ("IFLA_IFNAME", "exp0"), ("IFLA_NET_NS_FD", 5), ("IFLA_MTU", 1450),
        ("IFLA_LINKINFO", {"attrs": [("IFLA_INFO_KIND", "vxlan"),
                                     ("IFLA_INFO_DATA", {"attrs": data})]}),
        ("IFLA_ADDRESS", "02:00:00:00:00:01")])
    made = _sent(lambda b: b.add_vxlan("exp0", ns_fd=5, vni=1001, local_ip=local_ip, mtu=1450,
                                       address="02:00:00:00:00:01"))
    assert made == expected


def test_set_link_group_delete_group_and_get_link() -> None:
    assert _sent(lambda b: b.set_link(4, up=True, mtu=1450, master=2)) == _pyroute2_link(
        rtmsg.RTM_NEWLINK, _SET, [("IFLA_MTU", 1450), ("IFLA_MASTER", 2)], index=4, up=True)
    assert _sent(lambda b: b.set_link(4, up=False)) == _pyroute2_link(
        rtmsg.RTM_NEWLINK, _SET, [], index=4, up=False)
    assert _sent(lambda b: b.set_group(3, 1 << 30)) == _pyroute2_link(
        rtmsg.RTM_NEWLINK, _SET, [("IFLA_GROUP", 1 << 30)], index=3)
    assert _sent(lambda b: b.delete_group(77)) == _pyroute2_link(
        rtmsg.RTM_DELLINK, _SET, [("IFLA_GROUP", 77)])
    assert _sent(lambda b: b.get_link("eth0")) == _pyroute2_link(
        rtmsg.RTM_GETLINK, NLM_F_REQUEST, [("IFLA_IFNAME", "eth0")])


@pytest.mark.parametrize(("cidr", "ip", "length"), [
    ("10.216.0.1/30", "10.216.0.1", 30), ("10.1.2.3", "10.1.2.3", 32),
    ("10.1.2.3/255.255.255.0", "10.1.2.3", 24)])
def test_address(cidr: str, ip: str, length: int) -> None:
    msg = ifaddrmsg()
    msg["family"], msg["index"], msg["prefixlen"] = socket.AF_INET, 3, length
    msg["attrs"] = [("IFA_LOCAL", ip), ("IFA_ADDRESS", ip)]
    msg["header"]["type"], msg["header"]["flags"] = rtmsg.RTM_NEWADDR, _CREATE
    msg.encode()
    assert _sent(lambda b: b.add_address(3, cidr)) == bytes(msg.data)


@pytest.mark.parametrize("cidr", ["10.1.2/24", "10.1.2.300/24", "10.1.2.3/33", "x/24"])
def test_a_bad_address_is_refused(cidr: str) -> None:
    with pytest.raises(ValueError):
        rtmsg.address_message(3, cidr, _CREATE)
