"""Which links need a bridge, and the netlink messages of bulk link deletion (no root)."""

from __future__ import annotations

import socket
import struct

import pytest
from pyroute2.netlink.rtnl import RTM_DELLINK, RTM_NEWLINK
from pyroute2.netlink.rtnl.ifinfmsg import ifinfmsg

from slicelab.agent.net.batch import Batch
from slicelab.agent.runtime import pairs
from slicelab.agent.spec import LinkSpec


@pytest.mark.parametrize(
    ("members", "remotes", "kind"),
    [
        (("a", "b"), (), pairs.PAIR),
        (("a",), ("192.0.2.2",), pairs.TUNNEL),
        (("a", "b", "c"), (), "bridge"),
        (("a", "b"), ("192.0.2.2",), "bridge"),
        ((), (), "bridge"),  # members unknown: a bridge the slivers join later
        (("a",), (), "bridge"),
    ],
)
def test_link_kind(members: tuple[str, ...], remotes: tuple[str, ...], kind: str) -> None:
    spec = LinkSpec(link_id="l", vni=7, members=members, remotes=remotes)
    assert pairs.kind_of(spec) == kind


def _decoded(batch: Batch) -> list[ifinfmsg]:
    found = []
    for _, data in batch._messages:
        msg = ifinfmsg(data)
        msg.decode()
        found.append(msg)
    return found


def test_group_deletion_is_one_request_for_all_links() -> None:
    with socket.socket() as sock:
        batch = Batch(sock)
        for index in (11, 12, 13):
            batch.set_group(index, 1 << 30)
        batch.delete_group(1 << 30)
        messages = _decoded(batch)
    assert [m["header"]["type"] for m in messages] == [RTM_NEWLINK] * 3 + [RTM_DELLINK]
    assert [m["index"] for m in messages] == [11, 12, 13, 0]
    assert {m.get_attr("IFLA_GROUP") for m in messages} == {1 << 30}


def test_vxlan_is_made_inside_a_namespace_with_its_remotes() -> None:
    with socket.socket() as sock:
        batch = Batch(sock)
        batch.add_vxlan("exp0", ns_fd=9, vni=1234, local_ip="192.0.2.1", mtu=1450)
        batch.add_remote(5, "192.0.2.2")
        vxlan = _decoded(batch)[0]
        remote = batch._messages[1][1]
    assert vxlan.get_attr("IFLA_NET_NS_FD") == 9 and vxlan.get_attr("IFLA_MTU") == 1450
    info = dict(vxlan.get_attr("IFLA_LINKINFO")["attrs"])["IFLA_INFO_DATA"]["attrs"]
    data = {str(key): value for key, value in info}
    assert data["IFLA_VXLAN_ID"] == 1234 and data["IFLA_VXLAN_LOCAL"] == "192.0.2.1"
    assert struct.unpack_from("=i", remote, 20)[0] == 5  # the fdb entry's ifindex
