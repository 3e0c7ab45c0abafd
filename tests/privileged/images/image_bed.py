"""Helpers of the image tests on a real testbed: agents and the server stopped and started
by their recorded pid (the testbed's state file is updated, so teardown stops the new
processes), agent configs changed, image trees made, node caches read."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from slicelab.images.packs import Packs
from slicelab.images.rootfs import build_minimal
from slicelab.sdk.images import ImageClient
from slicelab.testbed import processes
from slicelab.testbed.demo import World
from slicelab.testbed.record import Item, TestbedRecord

__all__ = ["MARKER", "agent_item", "bulk_tree", "cache_report", "held_chunks", "kill_agent",
           "marked_tree", "restart_server", "start_agent", "wait_for"]

MARKER = "etc/slicelab-test-marker"
T = TypeVar("T")


def wait_for(what: str, check: Callable[[], T], *, timeout: float, every: float = 0.2) -> T:
    """Poll ``check`` until it returns something true; its value."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout:g} s")
        time.sleep(every)


def _reload(world: World) -> TestbedRecord:
    record = TestbedRecord.load(world.record.path)
    assert record is not None, "the testbed's state file is gone"
    world.record = record
    return record


def agent_item(world: World, host: str) -> Item:
    return next(i for i in _reload(world).of_kind("agent") if i.name == host)


def _remember(world: World, kind: str, name: str, pid: int, start: int) -> None:
    record = _reload(world)
    found = next(i for i in record.items if (i.kind, i.name) == (kind, name))
    found.data.update(pid=pid, start=start)
    record.save()


def kill_agent(world: World, host: str, *, sig: int = signal.SIGKILL) -> None:
    """Signal the host's agent (by recorded pid and start time) and wait until it is gone."""
    item = agent_item(world, host)
    pid, start = int(item.data["pid"]), item.data["start"]
    if processes.alive(pid, start):
        os.kill(pid, sig)
    wait_for(f"the agent of {host} exits",
             lambda: not processes.alive(pid, start), timeout=15, every=0.02)


def start_agent(world: World, host: str, **config: Any) -> None:
    """Start the host's agent again, with ``config`` changes written to its config first."""
    item = agent_item(world, host)
    home = Path(item.data["home"])
    path = home / "agent.json"
    current = json.loads(path.read_text())
    current.update({k: v for k, v in config.items() if v is not None})
    for key in [k for k, v in config.items() if v is None]:
        current.pop(key, None)
    path.write_text(json.dumps(current, indent=2) + "\n")
    argv = ["nsenter", f"--net=/var/run/netns/{item.data['ns']}", "--",
            *processes.slicelab_argv(), "agent", "run", "--config", str(path)]
    pid, start = processes.spawn(argv, log=home / "agent.log")
    _remember(world, "agent", host, pid, start)


def restart_server(world: World) -> None:
    """Stop the server (recorded pid) and start it again on the same database and port."""
    item = _reload(world).of_kind("server")[0]
    processes.stop(item.data["pid"], item.data.get("start"), again_after=1.0)
    url = urlsplit(str(world.record.info["server"]))
    argv = [*processes.slicelab_argv(), "server", "--host", str(url.hostname),
            "--port", str(url.port), "--db", str(world.base_dir / "server" / "slicelab.db")]
    pid, start = processes.spawn(argv, log=world.base_dir / "server" / "server.log")
    _remember(world, "server", item.name, pid, start)


def held_chunks(world: World, host: str) -> set[str]:
    """Hashes of the chunks in the host's image cache (chunk files and packs)."""
    home = Path(agent_item(world, host).data["home"])
    store = home / "state" / "imagecache" / "store"
    files = {p.name.removesuffix(".zst") for p in (store / "chunks").glob("*/*.zst")}
    return files | set(Packs(store / "packs", tmp=store / "tmp").places)


def cache_report(world: World, host: str) -> dict[str, Any]:
    """The host's image cache as its agent last reported it (``node show``)."""
    found = ImageClient.of(world.admin).node_cache(host)
    cache: dict[str, Any] = found.get("cache") or {}
    return cache


def marked_tree(root: Path, text: str) -> Path:
    """The minimal image with a marker file holding ``text``."""
    if not (root / "bin").exists():
        build_minimal(root)
    (root / MARKER).write_text(text + "\n")
    return root


def bulk_tree(root: Path, *, mib: int, seed: int) -> Path:
    """The minimal image plus ``mib`` MiB of random bytes in ``/bulk`` (1 MiB files)."""
    build_minimal(root)
    (root / "bulk").mkdir()
    rng = random.Random(seed)
    for i in range(mib):
        (root / "bulk" / f"f{i:03d}.bin").write_bytes(rng.randbytes(1 << 20))
    return root
