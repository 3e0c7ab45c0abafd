"""Slivers for real: links, isolation, limits, SSH, idempotence."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from slicelab.agent.runtime.node import NodeRuntime
from slicelab.agent.spec import InterfaceSpec, LinkSpec, SliverSpec, SliverState

pytestmark = pytest.mark.privileged

Make = Callable[..., NodeRuntime]
Spec = Callable[..., SliverSpec]


def _pair(runtime: NodeRuntime, image: Path, sliver: Spec) -> None:
    runtime.ensure_link(LinkSpec(link_id="l1", vni=101))
    for i in (1, 2):
        iface = InterfaceSpec(link_id="l1", ifname="exp0", ipv4=f"10.50.0.{i}/24")
        runtime.ensure_sliver(sliver(image, f"s{i}", port=21000 + 10 * i, ifaces=(iface,)))


def test_two_slivers_on_a_link_ping_each_other(
        make_runtime: Make, image: Path, sliver: Spec) -> None:
    runtime = make_runtime()
    _pair(runtime, image, sliver)
    code, out, _ = runtime.exec("s1", ["ping", "-c", "2", "-W", "2", "10.50.0.2"], timeout=10)
    assert code == 0 and "2 packets received" in out
    code, out, _ = runtime.exec("s2", ["hostname"])
    assert (code, out.strip()) == (0, "s2.exp.proj.test")
    code, out, _ = runtime.exec("s2", ["cat", "/etc/slicelab/slice.urn"])
    assert out == "urn:publicid:IDN+test+slice+exp"
    assert [s.state for s in runtime.list_slivers()] == [SliverState.RUNNING] * 2


def test_sliver_order_does_not_matter(make_runtime: Make, image: Path, sliver: Spec) -> None:
    runtime = make_runtime()
    for i in (1, 2):
        iface = InterfaceSpec(link_id="late", ifname="exp0", ipv4=f"10.51.0.{i}/24")
        runtime.ensure_sliver(sliver(image, f"o{i}", port=21100 + 10 * i, ifaces=(iface,)))
    code, _, _ = runtime.exec("o1", ["ping", "-c", "1", "-W", "1", "10.51.0.2"])
    assert code != 0  # no link yet
    runtime.ensure_link(LinkSpec(link_id="late", vni=102))
    code, _, _ = runtime.exec("o1", ["ping", "-c", "2", "-W", "2", "10.51.0.2"], timeout=10)
    assert code == 0


def test_slivers_on_different_links_cannot_reach_each_other(make_runtime: Make,
                                                            image: Path, sliver: Spec) -> None:
    runtime = make_runtime()
    for n, link in ((1, "la"), (2, "lb")):
        runtime.ensure_link(LinkSpec(link_id=link, vni=200 + n))
        iface = InterfaceSpec(link_id=link, ifname="exp0", ipv4=f"10.52.0.{n}/24")
        runtime.ensure_sliver(sliver(image, f"i{n}", port=21200 + 10 * n, ifaces=(iface,)))
    other = runtime.status("i2").control_ip
    assert other is not None
    for target in ("10.52.0.2", other):
        code, out, _ = runtime.exec("i1", ["ping", "-c", "2", "-W", "1", target], timeout=10)
        assert code != 0, out
    code, _, _ = runtime.exec("i1", ["ping", "-c", "1", "-W", "2", str(runtime.gateway)])
    assert code == 0  # the host side of the control network is reachable


def test_ensure_twice_changes_nothing(make_runtime: Make, image: Path, sliver: Spec) -> None:
    runtime = make_runtime()
    _pair(runtime, image, sliver)
    before = [(r.id, r.kind, r.name, r.data) for r in runtime.ledger.records()]
    pid = runtime.status("s1").init_pid
    _pair(runtime, image, sliver)
    assert [(r.id, r.kind, r.name, r.data) for r in runtime.ledger.records()] == before
    assert runtime.status("s1").init_pid == pid


def test_changed_spec_rebuilds_and_remove_is_idempotent(make_runtime: Make,
                                                        image: Path, sliver: Spec) -> None:
    runtime = make_runtime()
    runtime.ensure_sliver(sliver(image, "c1", port=21300))
    status = runtime.ensure_sliver(sliver(image, "c1", port=21300, memory_mib=96))
    assert status.state is SliverState.RUNNING
    limit = Path("/sys/fs/cgroup/memory/slicelab", runtime.prefix, "c1",
                 "memory.limit_in_bytes")
    assert limit.read_text().strip() == str(96 << 20)
    runtime.remove_sliver("c1")
    runtime.remove_sliver("c1")
    assert runtime.status("c1").state is SliverState.ABSENT


def test_stop_start_restart(make_runtime: Make, image: Path, sliver: Spec) -> None:
    runtime = make_runtime()
    runtime.ensure_sliver(sliver(image, "r1", port=21400))
    runtime.stop("r1", timeout=1.0)
    assert runtime.status("r1").state is SliverState.STOPPED
    runtime.ensure_sliver(sliver(image, "r1", port=21400))
    first = runtime.status("r1").init_pid
    assert first is not None
    runtime.restart("r1")
    assert runtime.status("r1").init_pid not in (None, first)


def test_memory_hog_is_oom_killed_inside(make_runtime: Make, image: Path, sliver: Spec) -> None:
    runtime = make_runtime()
    runtime.ensure_sliver(sliver(image, "m1", port=21500, memory_mib=32))
    code, _, _ = runtime.exec("m1", ["dd", "if=/dev/zero", "of=/dev/null", "bs=128M",
                                     "count=1"], timeout=20)
    assert code in (137, -9)
    code, _, _ = runtime.exec("m1", ["dd", "if=/dev/zero", "of=/dev/null", "bs=4M",
                                     "count=1"])
    assert code == 0
    assert runtime.status("m1").state is SliverState.RUNNING


def test_pids_limit_stops_a_fork_bomb(make_runtime: Make, image: Path, sliver: Spec) -> None:
    runtime = make_runtime()
    runtime.ensure_sliver(sliver(image, "f1", port=21600, pids_max=20))
    bomb = "i=0; while [ $i -lt 60 ]; do sleep 3 & i=$((i+1)); done; wait"
    code, _, err = runtime.exec("f1", ["sh", "-c", bomb], timeout=20)
    assert "fork" in err.lower() or code != 0
    pids = Path("/sys/fs/cgroup/pids/slicelab", runtime.prefix, "f1")
    assert int((pids / "pids.events").read_text().split()[1]) > 0
    assert runtime.status("f1").state is SliverState.RUNNING


def _banner(host: str, port: int) -> bytes:
    """The first bytes the server sends; waits up to 10 s for dropbear to listen."""
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection((host, port), timeout=5) as conn:
                return conn.recv(64)
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def test_forwarded_port_reaches_dropbear(make_runtime: Make, image: Path, sliver: Spec,
                                         tmp_path: Path) -> None:
    key = tmp_path / "id"
    out = subprocess.run(["dropbearkey", "-t", "ed25519", "-f", str(key)],
                         capture_output=True, text=True, check=True).stdout
    public = next(line for line in out.splitlines() if line.startswith("ssh-ed25519"))
    runtime = make_runtime()
    runtime.ensure_sliver(sliver(image, "h1", port=21700, keys=(public,)))
    host = str(runtime.gateway)
    assert _banner(host, 21700).startswith(b"SSH-2.0-dropbear")
    login = subprocess.run(["dbclient", "-y", "-y", "-i", str(key), "-p", "21700",
                            f"root@{host}", "hostname"], capture_output=True, text=True,
                           timeout=20, env={"HOME": str(tmp_path), "PATH": "/usr/bin:/bin"},
                           check=False)
    assert login.stdout.strip() == "h1.exp.proj.test", login.stderr


def test_two_member_link_is_a_veth_pair_that_survives_a_rebuild(make_runtime: Make,
                                                                  image: Path,
                                                                  sliver: Spec) -> None:
    runtime = make_runtime()
    status = runtime.ensure_link(LinkSpec(link_id="duo", vni=310, capacity_mbps=40,
                                          members=("d1", "d2")))
    assert status.present and status.bridge is None
    specs = [sliver(image, f"d{n}", port=21800 + 10 * n,
                    ifaces=(InterfaceSpec(link_id="duo", ifname="exp0",
                                          ipv4=f"10.56.0.{n}/24"),)) for n in (1, 2)]
    runtime.ensure_sliver(specs[0])  # the pair comes when its second member does
    runtime.ensure_sliver(specs[1])
    assert runtime.status("d1").interfaces == ("exp0",)
    code, out, _ = runtime.exec("d1", ["ping", "-c", "1", "-W", "2", "10.56.0.2"])
    assert code == 0, out
    for name in ("d1", "d2"):
        ns = runtime.status(name).netns
        assert ns is not None
        shown = subprocess.run(["tc", "-n", ns, "qdisc", "show", "dev", "exp0"],
                               capture_output=True, text=True, check=True).stdout
        assert "tbf" in shown, shown
    runtime.remove_sliver("d2")  # the pair goes with d2's namespace
    runtime.ensure_slivers(specs)  # d1 is current; d2 is built and the pair made again
    code, out, _ = runtime.exec("d2", ["ping", "-c", "1", "-W", "2", "10.56.0.1"])
    assert code == 0, out
    runtime.remove_link("duo")
    ns = runtime.status("d1").netns
    assert ns is not None
    gone = subprocess.run(["ip", "-n", ns, "link", "show", "exp0"], capture_output=True,
                          text=True, check=False)
    assert gone.returncode != 0, gone.stdout
