"""The researcher's story on real kernels: apply, ready, exec, ssh, metadata, routes, delete."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from e2e_support import ledger_rows, wait_for

from slicelab.sdk.nodes import SliceStatus
from slicelab.testbed import processes
from slicelab.testbed.demo import (
    World,
    apply_and_wait,
    line_topology,
    ping_rtt,
    route_line,
    wait_released,
)
from slicelab.testbed.leftovers import recorded

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


@pytest.fixture(scope="module")
def line(world: World) -> SliceStatus:
    status = apply_and_wait(world.member, world.ref, line_topology())
    world.remember()
    return status


def _kinds(world: World, host: str, kind: str) -> list[dict[str, object]]:
    return [r for r in ledger_rows(world, host) if r["kind"] == kind]


def test_slivers_are_placed_across_hosts_and_links_built(world: World,
                                                         line: SliceStatus) -> None:
    assert {s.client_id: s.node for s in line.slivers} == {
        "n1": "host1", "n2": "host2", "n3": "host2", "n4": "host3"}
    assert all(s.state == "ready" and s.ssh for s in line.slivers)
    links = {h: _kinds(world, h, "link") for h in ("host2", "host3")}
    pairs = {h: [r for r in rows if str(r["owner"]).startswith("link:")]
             for h, rows in links.items()}
    tunnels = {h: [r for r in rows if isinstance(r["data"], dict) and r["data"].get("tunnel")]
               for h, rows in links.items()}
    # host2: l23 is local (one veth pair between n2 and n3, no bridge); l12 and l34 reach
    # other hosts (a VXLAN device inside n2's and n3's namespaces); host3: l34's other end
    assert len(pairs["host2"]) == 1 and not pairs["host3"]
    assert len(tunnels["host2"]) == 2 and len(tunnels["host3"]) == 1
    assert len(_kinds(world, "host2", "qdisc")) == 4  # each of 4 interfaces shapes its egress


def test_exec_returns_exit_code_and_output(world: World, line: SliceStatus) -> None:
    result = world.member.exec(world.ref, "n2", ["sh", "-c", "hostname; echo oops >&2; exit 3"])
    assert result.exit_code == 3
    assert result.stdout.strip() == "n2.line.demo.slicelab.test"
    assert result.stderr.strip() == "oops"


def test_routes_make_the_line_reachable_end_to_end(world: World, line: SliceStatus) -> None:
    route_line(world.member, world.ref, line)
    far = line.sliver("n4").addresses[0].split("/")[0]
    assert ping_rtt(world.member, world.ref, "n1", far) < 50


def test_metadata_answers_inside_the_sliver(world: World, line: SliceStatus) -> None:
    out = world.member.exec(world.ref, "n3", ["wget", "-q", "-O", "-",
                                              "http://169.254.169.254/v1/identity"])
    assert out.exit_code == 0, out.stderr
    identity = json.loads(out.stdout)
    assert identity["client_id"] == "n3" and identity["sliver_id"] == line.sliver("n3").sliver_id
    keys = world.member.exec(world.ref, "n3", ["cat", "/root/.ssh/authorized_keys"]).stdout
    assert world.key_path.with_suffix(".pub").read_text().split()[1] in keys


def test_slicelab_ssh_logs_in_with_the_members_key(world: World, line: SliceStatus) -> None:
    env = {**os.environ, "SLICELAB_URL": str(world.record.info["server"]),
           "SLICELAB_TOKEN": world.member_token}
    argv = [*processes.slicelab_argv(), "ssh", world.ref, "n1", "-i", str(world.key_path),
            "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
            "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "--", "cat", "/etc/hostname"]
    done = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=60,
                          check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "n1.line.demo.slicelab.test"


def test_iperf3_is_in_the_image(world: World, line: SliceStatus) -> None:
    result = world.member.exec(world.ref, "n1", ["iperf3", "--version"])
    assert result.exit_code == 0 and result.stdout.startswith("iperf 3")


def test_a_sliver_sees_only_its_own_interfaces(world: World, line: SliceStatus) -> None:
    out = world.member.exec(world.ref, "n2", ["ip", "-o", "link"]).stdout
    names = [line.split(":")[1].strip().split("@")[0] for line in out.splitlines()]
    assert sorted(names) == ["eth0", "eth1", "eth2", "lo"]


def test_slice_delete_removes_every_kernel_object(world: World, line: SliceStatus) -> None:
    from slicelab.testbed.leftovers import leftovers

    mine = recorded(world.base_dir)
    sliver_objects = [r for h in ("host1", "host2", "host3") for r in ledger_rows(world, h)
                      if r["owner"] != "agent"]
    assert sliver_objects
    world.member.delete_slice(world.ref)
    wait_released(world.base_dir, timeout=30)
    gone = [x for x in leftovers(mine) if "slicelab-tb" not in x and "agent" not in x]
    still = [x for x in gone if any(str(r["name"]) in x for r in sliver_objects)]
    assert not still
    world.member.create_slice(world.ref, days=1)  # for the tests that follow
    assert wait_for("agents idle", lambda: world.member.slice_status(world.ref).slivers == (),
                    timeout=5)
    assert Path(world.key_path).exists()
