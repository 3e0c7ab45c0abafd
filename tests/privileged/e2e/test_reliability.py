"""Reliability on real kernels: kill -9 during provisioning, a network cut, a server restart,
limits inside a sliver, isolation between slices, and refused agent requests."""

from __future__ import annotations

import json
import os
import random
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_support import (
    agent_item,
    agent_kernel,
    ledger_rows,
    restart_agent,
    restart_server,
    signed,
    sliver_pids,
    wait_for,
)

from slicelab.agent.state import AgentFiles
from slicelab.sdk.nodes import SliceStatus
from slicelab.testbed.demo import World, apply_and_wait, line_topology, wait_ready

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]


def _with(*extra: dict[str, Any], links: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    topology = line_topology()
    topology["nodes"] += list(extra)
    topology["links"] += links or []
    return topology


def _node(name: str, host: str) -> dict[str, Any]:
    return {"name": name, "cores": 0.2, "memory": 64, "component_id": host}


@pytest.fixture(scope="module")
def line(world: World) -> SliceStatus:
    status = apply_and_wait(world.member, world.ref, line_topology())
    world.remember()
    return status


def _cgroup(world: World, host: str, sliver_id: str, controller: str) -> Path:
    for row in ledger_rows(world, host):
        if row["kind"] == "cgroup" and row["owner"] == f"sliver:{sliver_id}" \
                and f"/{controller}/" in str(row["name"]):
            return Path(str(row["name"]))
    raise AssertionError(f"no {controller} cgroup for {sliver_id}")


def _expected(world: World, host: str) -> dict[str, set[str]]:
    rows = [r for r in ledger_rows(world, host) if r["owner"] != "agent"]
    return {"netns": {r["name"] for r in rows if r["kind"] == "netns"},
            "links": {r["name"] for r in rows if r["kind"] == "link" and "ns" not in r["data"]},
            # a sliver's root is mounted in its own mount namespace, never in the host's
            "mounts": set(),
            "cgroups": {r["name"] for r in rows if r["kind"] == "cgroup"}}


def _owners_wanted(world: World, host: str) -> set[str]:
    doc = AgentFiles(Path(agent_item(world, host).data["home"]) / "state").desired() or {}
    return ({f"sliver:{s['sliver_id']}" for s in doc.get("slivers", [])}
            | {f"link:{lk['link_id']}" for lk in doc.get("links", [])})


def _desired_clients(world: World, host: str) -> set[str]:
    """The client ids of the slivers in the host agent's cached desired state."""
    doc = AgentFiles(Path(agent_item(world, host).data["home"]) / "state").desired() or {}
    return {str(s.get("client_id")) for s in doc.get("slivers", [])}


def _converged(world: World, host: str) -> bool:
    rows = ledger_rows(world, host)
    owners = {r["owner"] for r in rows} - {"agent"}
    return owners == _owners_wanted(world, host) and all(r["done"] for r in rows)


def test_kill_9_during_provisioning_converges_without_leaks(world: World,
                                                            line: SliceStatus) -> None:
    rng = random.Random(20)
    extra = _with(_node("e1", "host3"), _node("e2", "host3"),
                  links=[{"name": "le", "members": ["e1", "e2"], "capacity": 50}])
    for i in range(20):
        world.member.apply_topology(world.ref, extra if i % 2 == 0 else line_topology())
        time.sleep(rng.uniform(0.0, 1.2))
        restart_agent(world, "host3")
    status = apply_and_wait(world.member, world.ref, extra, timeout=120)
    assert {s.client_id for s in status.slivers if s.node == "host3"} == {"n4", "e1", "e2"}
    wait_for("host3 converged", lambda: _converged(world, "host3"), timeout=60)
    assert agent_kernel(world, "host3") == _expected(world, "host3")
    assert world.member.exec(world.ref, "e1", ["ping", "-c", "1", "-W", "2",
                                               status.sliver("e2").addresses[0]
                                               .split("/")[0]]).exit_code == 0
    apply_and_wait(world.member, world.ref, line_topology())  # at once: n1..n4 are ready
    wait_for("host3 has the smaller slice", lambda: _desired_clients(world, "host3") == {"n4"},
             timeout=30, every=0.1)
    wait_for("host3 converged", lambda: _converged(world, "host3"), timeout=60)
    assert agent_kernel(world, "host3") == _expected(world, "host3")


@pytest.fixture
def cut(world: World) -> Iterator[Any]:
    """Cut host2's agent off the server with an nft table in host2's namespace."""
    ns = str(agent_item(world, "host2").data["ns"])
    server = str(world.record.info["server"]).split("//")[1].split(":")[0]
    enter = ["nsenter", f"--net=/var/run/netns/{ns}", "--"]
    table = {"family": "inet", "name": "slicelab_e2e_cut"}

    def nft(commands: list[dict[str, Any]]) -> None:
        subprocess.run([*enter, "nft", "-j", "-f", "-"],
                       input=json.dumps({"nftables": commands}), text=True, check=True,
                       timeout=30)

    def drop(chain: str, hook: str, field: str) -> list[dict[str, Any]]:
        match = {"op": "==", "left": {"payload": {"protocol": "ip", "field": field}},
                 "right": server}
        return [{"add": {"chain": {"family": "inet", "table": table["name"], "name": chain,
                                   "type": "filter", "hook": hook, "prio": 0}}},
                {"add": {"rule": {"family": "inet", "table": table["name"], "chain": chain,
                                  "expr": [{"match": match}, {"drop": None}]}}}]

    def start() -> None:
        nft([{"add": {"table": table}}, *drop("out", "output", "daddr"),
             *drop("in", "input", "saddr")])

    def stop(*, check: bool = True) -> None:
        subprocess.run([*enter, "nft", "delete", "table", "inet", table["name"]],
                       capture_output=True, check=check, timeout=30)

    try:
        yield start, stop
    finally:
        stop(check=False)


def _desired_has(world: World, host: str, client_id: str) -> bool:
    return client_id in _desired_clients(world, host)


def test_a_cut_off_agent_keeps_slivers_and_catches_up(world: World, line: SliceStatus,
                                                      cut: Any) -> None:
    start, stop = cut
    before = sliver_pids(world, "host2")
    assert set(before) == {line.sliver("n2").sliver_id, line.sliver("n3").sliver_id}, \
        ledger_rows(world, "host2")
    start()
    began = time.monotonic()
    world.member.apply_topology(world.ref, _with(_node("c1", "host2")))
    n2 = line.sliver("n2").addresses[0].split("/")[0]
    while time.monotonic() - began < 30:
        assert world.member.exec(world.ref, "n1", ["ping", "-c", "1", "-W", "2", n2]
                                 ).exit_code == 0
        assert sliver_pids(world, "host2") == before
        time.sleep(5)
    assert not _desired_has(world, "host2", "c1")
    assert "c1" not in {s.client_id for s in world.member.slice_status(world.ref).slivers
                        if s.state == "ready"}
    stop()
    ended = time.monotonic()
    wait_for("host2 has the change made during the cut",
             lambda: _desired_has(world, "host2", "c1"), timeout=12, every=0.1)
    print(f"\nchange arrived {time.monotonic() - ended:.1f} s after the cut ended")
    wait_ready(world.member, world.ref, timeout=60)
    print(f"slice ready {time.monotonic() - ended:.1f} s after the cut ended")
    assert all(before[k] == v for k, v in sliver_pids(world, "host2").items() if k in before)
    apply_and_wait(world.member, world.ref, line_topology())
    wait_for("host2 dropped c1", lambda: _desired_clients(world, "host2") == {"n2", "n3"},
             timeout=30, every=0.1)
    wait_for("host2 converged", lambda: _converged(world, "host2"), timeout=60)


def test_a_server_restart_recreates_nothing(world: World, line: SliceStatus) -> None:
    hosts = ("host1", "host2", "host3")
    for host in hosts:
        wait_for(f"{host} converged", lambda h=host: _converged(world, h), timeout=60)
    before = {h: ledger_rows(world, h) for h in hosts}
    restart_server(world)
    for node in ("n1", "n2", "n4"):  # a command reaches each agent: it is polling again
        result = wait_for(f"exec on {node}", lambda n=node: _try_exec(world, n), timeout=90,
                          every=1.0)
        assert result.strip() == "ok"
    after = {h: ledger_rows(world, h) for h in hosts}
    changed = {h: ([r for r in before[h] if r not in after[h]],
                   [r for r in after[h] if r not in before[h]]) for h in hosts
               if after[h] != before[h]}
    assert not changed, f"rows gone, rows new: {changed}"


def _try_exec(world: World, node: str) -> str | None:
    try:
        result = world.member.exec(world.ref, node, ["echo", "ok"], timeout=10)
    except Exception:  # the server is still starting
        return None
    return result.stdout if result.exit_code == 0 else None


def test_memory_hog_and_fork_bomb_stay_inside_the_sliver(world: World,
                                                         line: SliceStatus) -> None:
    n2 = line.sliver("n2").sliver_id
    pids_before = sliver_pids(world, "host2")
    hog = world.member.exec(world.ref, "n2", ["awk", 'BEGIN { s = "x"; while (1) s = s s }'],
                            timeout=60)
    assert hog.exit_code != 0
    memory = _cgroup(world, "host2", n2, "memory")
    assert int((memory / "memory.max_usage_in_bytes").read_text()) <= 128 << 20
    assert int((memory / "memory.failcnt").read_text()) > 0
    bomb = ["sh", "-c", "i=0; while [ $i -lt 1500 ]; do sleep 3 & i=$((i+1)); done; wait"]
    world.member.exec(world.ref, "n2", bomb, timeout=60)
    pids = _cgroup(world, "host2", n2, "pids")
    assert int((pids / "pids.max").read_text()) == 512
    assert "max 0" not in (pids / "pids.events").read_text()
    assert world.member.exec(world.ref, "n3", ["echo", "fine"]).stdout.strip() == "fine"
    assert sliver_pids(world, "host2") == pids_before


def test_slices_cannot_see_or_reach_each_other(world: World, line: SliceStatus) -> None:
    other = "demo/other"
    world.member.create_slice(other, days=1)
    topo = {"nodes": [_node("o1", "host1"), _node("o2", "host1")],
            "links": [{"name": "lo1", "members": ["o1", "o2"]}]}
    mine = apply_and_wait(world.member, other, topo)
    try:
        out = world.member.exec(other, "o1", ["ip", "-o", "link"]).stdout
        assert sorted(x.split(":")[1].strip().split("@")[0] for x in out.splitlines()) == [
            "eth0", "eth1", "lo"]
        control = world.member.exec(world.ref, "n1", ["ip", "-4", "-o", "addr", "show", "eth0"])
        n1_control = control.stdout.split()[3].split("/")[0]
        blocked = world.member.exec(other, "o1", ["ping", "-c", "2", "-W", "1", n1_control])
        assert blocked.exit_code != 0
        n1_link = line.sliver("n1").addresses[0].split("/")[0]
        assert world.member.exec(other, "o1", ["ping", "-c", "1", "-W", "1", n1_link]
                                 ).exit_code != 0
        o2 = mine.sliver("o2").addresses[0].split("/")[0]
        assert world.member.exec(other, "o1", ["ping", "-c", "1", "-W", "2", o2]).exit_code == 0
    finally:
        world.member.delete_slice(other)


def _failures(world: World, host: str) -> tuple[int, str]:
    node = world.admin.node(host)
    return node.auth_failures, node.boot_state


def test_forged_replayed_and_stale_requests_are_refused_and_counted(world: World,
                                                                    line: SliceStatus) -> None:
    with httpx.Client(timeout=10) as http:
        good = signed(world, "host3")
        assert http.send(good).status_code == 200
        assert http.send(good).status_code == 401  # replayed
        assert _failures(world, "host3")[0] >= 1
        stale = signed(world, "host3", now=time.time() - 120)
        assert http.send(stale).status_code == 401
        forged = signed(world, "host3", key=os.urandom(32))
        assert http.send(forged).status_code == 401
        assert _failures(world, "host3")[0] >= 2
        for _ in range(5):
            assert http.send(signed(world, "host3", key=os.urandom(32))).status_code == 401
    assert _failures(world, "host3")[1] == "debug"
    world.admin.set_node_state("host3", "boot")
    wait_ready(world.member, world.ref, timeout=60)
