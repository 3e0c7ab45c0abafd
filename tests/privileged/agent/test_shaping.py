"""Link capacity holds in both directions (iperf3 between two slivers' namespaces)."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from slicelab.agent.runtime.node import NodeRuntime
from slicelab.agent.spec import InterfaceSpec, LinkSpec, SliverSpec

pytestmark = pytest.mark.privileged


def _in_netns(ns: str, *argv: str) -> list[str]:
    return ["nsenter", f"--net=/var/run/netns/{ns}", "--", *argv]


def _iperf(server_ns: str, client_ns: str, address: str, *, reverse: bool) -> float:
    """Mbit/s received in a 4 s iperf3 TCP run after a 1 s warm-up (server -> client when
    ``reverse``). Four seconds, so that a stall of the shared machine (another test's
    namespaces being reclaimed by the kernel) weighs little against the 10% allowed."""
    server = subprocess.Popen(_in_netns(server_ns, "iperf3", "-s", "-1", "-p", "5201"),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.3)
        argv = ["iperf3", "-c", address, "-p", "5201", "-t", "4", "-O", "1", "-J"]
        done = subprocess.run(_in_netns(client_ns, *argv, *(["-R"] if reverse else [])),
                              capture_output=True, text=True, timeout=30, check=True)
    finally:
        server.kill()
        server.wait()
    result = json.loads(done.stdout)
    return float(result["end"]["sum_received"]["bits_per_second"]) / 1e6


@pytest.mark.parametrize(("capacity", "members"), [(10, ()), (50, ()), (50, ("q1", "q2"))],
                         ids=["bridge-10", "bridge-50", "pair-50"])
def test_capacity_in_both_directions(make_runtime: Callable[..., NodeRuntime], image: Path,
                                     sliver: Callable[..., SliverSpec], capacity: int,
                                     members: tuple[str, ...]) -> None:
    runtime = make_runtime()
    runtime.ensure_link(LinkSpec(link_id="shaped", vni=300, capacity_mbps=capacity,
                                 members=members))
    for i in (1, 2):
        iface = InterfaceSpec(link_id="shaped", ifname="exp0", ipv4=f"10.53.0.{i}/24")
        runtime.ensure_sliver(sliver(image, f"q{i}", port=22000 + 10 * i, ifaces=(iface,)))
    a, b = (runtime.status(s).netns for s in ("q1", "q2"))
    assert a and b
    forward = _iperf(b, a, "10.53.0.2", reverse=False)
    backward = _iperf(b, a, "10.53.0.2", reverse=True)
    for measured in (forward, backward):
        assert abs(measured - capacity) <= 0.1 * capacity, (forward, backward)
