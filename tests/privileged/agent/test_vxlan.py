"""Two physical-node hosts as network namespaces, each with its own agent, one VXLAN link."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from pyroute2 import IPRoute, NetNS, netns

pytestmark = pytest.mark.privileged

Child = Callable[..., subprocess.CompletedProcess[str]]
UNDERLAY = ("192.168.213.1", "192.168.213.2")


@pytest.fixture
def hosts() -> Iterator[list[str]]:
    """Two host namespaces joined by a test bridge; removed by name and ifindex after."""
    tag = os.getpid() % 10000
    names = [f"slicelab-test-z{tag}-{i}" for i in (1, 2)]
    made: list[tuple[str, object]] = []
    with IPRoute() as ipr:
        try:
            ipr.link("add", ifname=f"zbr{tag}", kind="bridge")
            bridge = ipr.link_lookup(ifname=f"zbr{tag}")[0]
            made.append(("link", bridge))
            ipr.link("set", index=bridge, state="up")
            for i, name in enumerate(names):
                netns.create(name)
                made.append(("netns", name))
                ipr.link("add", ifname=f"zv{tag}{i}", kind="veth",
                         peer={"ifname": "uplink", "net_ns_fd": name})
                host_end = ipr.link_lookup(ifname=f"zv{tag}{i}")[0]
                made.append(("link", host_end))
                ipr.link("set", index=host_end, master=bridge, state="up")
                with NetNS(name) as ns:
                    up = ns.link_lookup(ifname="uplink")[0]
                    ns.addr("add", index=up, address=UNDERLAY[i], prefixlen=24)
                    ns.link("set", index=up, state="up")
                    ns.link("set", index=ns.link_lookup(ifname="lo")[0], state="up")
            yield names
        finally:
            for kind, ident in reversed(made):
                if kind == "netns" and ident in netns.listnetns():
                    netns.remove(str(ident))
                elif kind == "link" and ipr.link_lookup(index=ident):
                    ipr.link("del", index=ident)


def _job(tmp_path: Path, image: Path, i: int, *, tunnel: bool = False) -> dict[str, object]:
    members = [f"w{i}"] if tunnel else []  # one local member: a VXLAN inside its netns
    link = {"link_id": "wide", "vni": 4242, "capacity_mbps": 50 if tunnel else None,
            "members": members,
            "remotes": [UNDERLAY[1 - i]], "local_ip": UNDERLAY[i]}
    sliver = {"id": f"w{i}", "ip": f"10.55.0.{i + 1}/24", "link": "wide", "port": 24000}
    return {"state_dir": str(tmp_path / f"host{i}"), "prefix": f"zv{i}",
            "subnet": "10.215.0.0/24", "host_ip": UNDERLAY[i], "image": str(image),
            "kill_at": None, "actions": [["link", link], ["sliver", sliver]]}


@pytest.mark.parametrize("tunnel", [False, True], ids=["bridge", "tunnel"])
def test_vxlan_link_across_two_hosts(hosts: list[str], children: Child, tmp_path: Path,
                                     image: Path, tunnel: bool) -> None:
    for i, host in enumerate(hosts):
        children(_job(tmp_path, image, i, tunnel=tunnel), netns=host)
    ping = ["exec", "w0", ["ping", "-c", "3", "-W", "2", "10.55.0.2"]]
    done = children({**_job(tmp_path, image, 0, tunnel=tunnel), "actions": [ping]},
                    netns=hosts[0])
    code, out, _ = json.loads(done.stdout.splitlines()[-1])
    assert code == 0, out
    assert "3 packets received" in out
