"""Helpers of the end-to-end tests: agents and the server restarted by recorded pid, kernel
objects of one agent compared with its ledger, signed requests made by hand."""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import httpx
from pyroute2 import NetNS, netns

from slicelab.agent.state import AgentFiles
from slicelab.testbed import processes
from slicelab.testbed.demo import World
from slicelab.testbed.record import Item, TestbedRecord

__all__ = ["agent_item", "agent_kernel", "ledger_rows", "restart_agent", "restart_server",
           "sliver_pids", "wait_for"]


def wait_for(what: str, check: Any, *, timeout: float, every: float = 0.2) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


def agent_item(world: World, host: str) -> Item:
    record = TestbedRecord.load(world.record.path)
    assert record is not None
    world.record = record
    return next(i for i in record.of_kind("agent") if i.name == host)


def _update(world: World, item: Item, pid: int, start: int) -> None:
    """Write the new pid into the testbed's state file, so teardown stops the new process."""
    record = world.record
    found = next(i for i in record.items if (i.kind, i.name) == (item.kind, item.name))
    found.data.update(pid=pid, start=start)
    record.save()


def restart_agent(world: World, host: str, *, kill: bool = True) -> int:
    """SIGKILL the host's agent (by its recorded pid and start time) and start it again."""
    item = agent_item(world, host)
    if kill and processes.alive(item.data["pid"], item.data["start"]):
        import os
        import signal

        os.kill(item.data["pid"], signal.SIGKILL)
        wait_for("the agent died", lambda: not processes.alive(item.data["pid"],
                                                                item.data["start"]),
                 timeout=10, every=0.01)
    home = Path(item.data["home"])
    argv = ["nsenter", f"--net=/var/run/netns/{item.data['ns']}", "--",
            *processes.agent_argv(), "run", "--config", str(home / "agent.json")]
    pid, start = processes.spawn(argv, log=home / "agent.log")
    _update(world, item, pid, start)
    return pid


def restart_server(world: World) -> None:
    """Stop the server (recorded pid) and start it again on the same database."""
    record = TestbedRecord.load(world.record.path)
    assert record is not None
    world.record = record
    item = record.of_kind("server")[0]
    processes.stop(item.data["pid"], item.data.get("start"), again_after=1.0)
    base = world.base_dir
    address = str(record.info["server"]).split("//")[1].split(":")[0]
    argv = [*processes.slicelab_argv(), "server", "--host", address, "--port", "8470",
            "--db", str(base / "server" / "slicelab.db")]
    pid, start = processes.spawn(argv, log=base / "server" / "server.log")
    _update(world, item, pid, start)


def ledger_rows(world: World, host: str) -> list[dict[str, Any]]:
    home = Path(agent_item(world, host).data["home"])
    db = sqlite3.connect(f"file:{home / 'state' / 'ledger.sqlite3'}?mode=ro", uri=True)
    try:
        rows = db.execute("SELECT owner, kind, name, data, done FROM objects ORDER BY id")
        return [{"owner": o, "kind": k, "name": n, "data": json.loads(d), "done": bool(x)}
                for o, k, n, d, x in rows]
    finally:
        db.close()


def sliver_pids(world: World, host: str) -> dict[str, int]:
    """Sliver id -> recorded init pid."""
    return {r["owner"].split(":", 1)[1]: int(r["data"]["pid"])
            for r in ledger_rows(world, host) if r["kind"] == "process" and "pid" in r["data"]}


def agent_kernel(world: World, host: str) -> dict[str, set[str]]:
    """The agent's kernel objects found by its prefix: netns, links in its host namespace,
    sliver cgroups and overlay mounts."""
    item = agent_item(world, host)
    prefix, ns = str(item.data["prefix"]), str(item.data["ns"])
    with NetNS(ns) as ipr:
        links = {str(m.get_attr("IFLA_IFNAME")) for m in ipr.get_links()}
    slivers = Path(item.data["home"]) / "state" / "slivers"
    mounts = {line.split()[4] for line in Path("/proc/self/mountinfo").read_text().splitlines()
              if line.split()[4].startswith(str(slivers))}
    groups = {str(p) for root in (Path("/sys/fs/cgroup"), Path("/sys/fs/cgroup/unified"))
              for c in ("cpu", "memory", "pids", "")
              for p in (root / c / "slicelab" / prefix).glob("*") if p.is_dir()}
    agent_links = {r["name"] for r in ledger_rows(world, host)
                   if r["owner"] == "agent" and r["kind"] == "link"}
    return {"netns": {n for n in netns.listnetns() if n.startswith(f"slicelab-{prefix}-")},
            "links": {n for n in links if n.startswith(prefix)} - agent_links,
            "mounts": mounts, "cgroups": groups}


def signed(world: World, host: str, *, key: bytes | None = None, now: float | None = None,
           nonce: str | None = None) -> httpx.Request:
    """A signed ``GET /agent/v1/desired?after=0&wait=0`` as the host's agent would send."""
    from slicelab.identity.nodekey import sign

    identity = AgentFiles(Path(agent_item(world, host).data["home"]) / "state").identity()
    assert identity is not None
    path = "/agent/v1/desired?after=0&wait=0"
    headers = sign(key or identity.key, "GET", path, b"", node_id=identity.node_id,
                   now=time.time() if now is None else now, nonce=nonce)
    return httpx.Request("GET", f"{world.record.info['server']}{path}", headers=headers)
