"""The whole story on this machine: a local testbed, a slice of four slivers in a line, routes,
ping and iperf3 across shaped links, then a teardown that proves nothing is left.

:func:`run_demo` drives it and reports each step through ``progress``; the building blocks
(:func:`open_world`, :func:`apply_and_wait`, :func:`route_line`, :func:`ping_rtt`,
:func:`iperf`) are public so that tests tell the same story. Needs root.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from slicelab.domain.errors import SlicelabError, Unavailable
from slicelab.sdk import Client
from slicelab.sdk.nodes import SliceStatus
from slicelab.testbed import bed
from slicelab.testbed.leftovers import Recorded, host_owners, leftovers, recorded
from slicelab.testbed.record import TestbedRecord

__all__ = [
    "DEMO_SLICE",
    "LINE_LINKS",
    "DemoResult",
    "Figure",
    "World",
    "apply_and_wait",
    "close_world",
    "iperf",
    "line_topology",
    "make_key",
    "open_world",
    "ping_rtt",
    "route_line",
    "run_demo",
    "wait_released",
]

DEMO_SLICE = "demo/line"
LINE_LINKS = (("l12", "n1", "n2", 100), ("l23", "n2", "n3", 10), ("l34", "n3", "n4", 100))
_PLACEMENT = {"n1": "host1", "n2": "host2", "n3": "host2", "n4": "host3"}
TOLERANCE = 0.10
Progress = Callable[[str], None]
_RTT = re.compile(r"min/avg/max = [0-9.]+/([0-9.]+)/")


@dataclass
class World:
    """A running testbed with an admin, a member (with a fresh key), a project and a slice."""

    base_dir: Path
    record: TestbedRecord
    admin: Client
    member: Client
    member_token: str
    key_path: Path
    ref: str = DEMO_SLICE
    seen: Recorded = field(default_factory=Recorded)

    def remember(self) -> None:
        """Note every object recorded now (the teardown check compares against these)."""
        self.seen = self.seen.merge(recorded(self.base_dir))


@dataclass(frozen=True)
class Figure:
    link: str
    direction: str
    asked_mbps: float
    measured_mbps: float

    @property
    def ratio(self) -> float:
        return self.measured_mbps / self.asked_mbps

    @property
    def ok(self) -> bool:
        return abs(self.ratio - 1.0) <= TOLERANCE


@dataclass
class DemoResult:
    figures: list[Figure] = field(default_factory=list)
    rtt_ms: float | None = None
    seconds: float = 0.0
    left: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return (not self.errors and not self.left and self.rtt_ms is not None
                and len(self.figures) == 2 * len(LINE_LINKS)
                and all(f.ok for f in self.figures))


def make_key(path: Path) -> str:
    """A fresh ed25519 key: the private key (OpenSSH format) to ``path``; the public line."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_bytes(private)
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH)
    line = public.decode() + " alice@slicelab-demo"
    path.with_suffix(".pub").write_text(line + "\n")
    return line


def open_world(base_dir: Path, *, subnet: str, hosts: int = 3, progress: Progress) -> World:
    """Testbed up, image built, admin, member ``alice`` with a key, project and slice."""
    progress(f"starting a server and a {hosts}-host testbed on {subnet}")
    record = bed.testbed_up(hosts, base_dir=base_dir, subnet=subnet, timeout=90)
    url = str(record.info["server"])
    admin = Client(url, str(record.info["admin_token"]), timeout=120)
    try:
        progress("building the minimal image (busybox, dropbear, iperf3)")
        admin.build_image("minimal")
        progress("making member alice (fresh ed25519 key), project demo, slice demo/line")
        made = admin.create_member("alice", email="alice@example.org", can_lead=True)
        member = Client(url, made.token, timeout=120)
        key_path = base_dir / "alice_ed25519"
        member.add_key(make_key(key_path), name="demo")
        project, _ = DEMO_SLICE.split("/")
        member.create_project(project, description="the slicelab demo")
        member.create_slice(DEMO_SLICE, days=1)
    except BaseException:
        admin.close()
        bed.testbed_down(base_dir=base_dir)
        raise
    return World(base_dir, record, admin, member, made.token, key_path)


def line_topology(links: Sequence[tuple[str, str, str, int]] = LINE_LINKS) -> dict[str, Any]:
    """n1-n2-n3-n4 over three hosts (n2 and n3 share host2: a local link between them)."""
    nodes = [{"name": n, "cores": 0.5, "memory": 128, "component_id": host}
             for n, host in _PLACEMENT.items()]
    return {"nodes": nodes, "links": [{"name": name, "members": [a, b], "capacity": mbps}
                                      for name, a, b, mbps in links]}


def apply_and_wait(client: Client, ref: str, topology: dict[str, Any], *,
                   timeout: float = 120.0) -> SliceStatus:
    """Apply ``topology`` and wait until every sliver is ready; raise if one fails."""
    client.apply_topology(ref, topology)
    return wait_ready(client, ref, timeout=timeout)


def wait_ready(client: Client, ref: str, *, timeout: float = 120.0) -> SliceStatus:
    deadline = time.monotonic() + timeout
    while True:
        status = client.slice_status(ref)
        if status.failed:
            raise Unavailable("sliver(s) failed: " + "; ".join(
                f"{s.client_id}: {s.error}" for s in status.failed))
        if status.slivers and all(s.state == "ready" for s in status.slivers):
            return status
        if time.monotonic() > deadline:
            raise Unavailable(f"{ref} not ready in {timeout:g} s: " + ", ".join(
                f"{s.client_id}={s.state}" for s in status.slivers))
        time.sleep(0.2)


def _run(client: Client, ref: str, node: str, argv: list[str], *,
         timeout: float = 30.0) -> str:
    result = client.exec(ref, node, argv, timeout=timeout)
    if result.exit_code != 0:
        raise Unavailable(f"{node}: {' '.join(argv)} exited {result.exit_code}: "
                          f"{(result.stderr or result.stdout).strip()[-300:]}")
    return result.stdout


def _addresses(status: SliceStatus) -> dict[str, list[str]]:
    return {s.client_id: [a.split("/")[0] for a in s.addresses] for s in status.slivers}


def _subnet(status: SliceStatus, node: str, index: int) -> str:
    import ipaddress

    address = status.sliver(node).addresses[index]
    return str(ipaddress.IPv4Interface(address).network)


def route_line(client: Client, ref: str, status: SliceStatus) -> None:
    """ip_forward in n2 and n3, and routes so that n1 reaches n4 and back."""
    ips = _addresses(status)
    nets = {"l12": _subnet(status, "n1", 0), "l23": _subnet(status, "n2", 1),
            "l34": _subnet(status, "n4", 0)}
    routes = {"n1": [(nets["l23"], ips["n2"][0]), (nets["l34"], ips["n2"][0])],
              "n2": [(nets["l34"], ips["n3"][0])],
              "n3": [(nets["l12"], ips["n2"][1])],
              "n4": [(nets["l12"], ips["n3"][1]), (nets["l23"], ips["n3"][1])]}
    for node in ("n2", "n3"):
        _run(client, ref, node, ["sysctl", "-w", "net.ipv4.ip_forward=1"])
    for node, pairs in routes.items():
        for net, via in pairs:
            _run(client, ref, node, ["ip", "route", "replace", net, "via", via])


def ping_rtt(client: Client, ref: str, node: str, address: str, *, count: int = 3) -> float:
    """Average round-trip time in ms of ``count`` pings from ``node`` to ``address``."""
    out = _run(client, ref, node, ["ping", "-c", str(count), "-i", "0.2", "-W", "2", address])
    match = _RTT.search(out)
    if match is None:
        raise Unavailable(f"no round-trip time in the output of ping: {out.strip()[-200:]}")
    return float(match.group(1))


def iperf(client: Client, ref: str, *, server: str, sender: str, address: str,
          reverse: bool = False, seconds: int = 3) -> float:
    """TCP throughput in Mbit/s from ``sender`` to ``server`` (``reverse``: the other way)."""
    _run(client, ref, server, ["iperf3", "-s", "-D", "-1", "-B", address])
    argv = ["iperf3", "-c", address, "-t", str(seconds), "-O", "1", "-J",
            *(["-R"] if reverse else [])]
    for attempt in range(20):
        result = client.exec(ref, sender, argv, timeout=seconds + 20)
        if result.exit_code == 0:
            data = json.loads(result.stdout)
            return float(data["end"]["sum_received"]["bits_per_second"]) / 1e6
        if "refused" not in result.stdout + result.stderr or attempt == 19:
            raise Unavailable(f"iperf3 {sender} -> {address}: {result.stdout[-300:]}"
                              f"{result.stderr[-300:]}")
        time.sleep(0.1)
    raise AssertionError("unreachable")


def measure(client: Client, ref: str, status: SliceStatus,
            progress: Progress) -> Iterator[Figure]:
    """Each link of the line, both ways."""
    ips = _addresses(status)
    server_ip = {"l12": ips["n2"][0], "l23": ips["n3"][0], "l34": ips["n4"][0]}
    for name, a, b, mbps in LINE_LINKS:
        for reverse in (False, True):
            direction = f"{b} -> {a}" if reverse else f"{a} -> {b}"
            progress(f"iperf3 on {name} ({mbps} Mbit/s), {direction}")
            got = iperf(client, ref, server=b, sender=a, address=server_ip[name],
                        reverse=reverse)
            yield Figure(name, direction, float(mbps), got)


def wait_released(base_dir: Path, *, timeout: float = 60.0) -> None:
    """Wait until no agent's ledger holds a sliver or a link."""
    deadline = time.monotonic() + timeout
    while any(host_owners(base_dir).values()):
        if time.monotonic() > deadline:
            raise Unavailable(f"agents still hold {host_owners(base_dir)} after {timeout:g} s")
        time.sleep(0.2)


def close_world(world: World) -> list[str]:
    """Tear the testbed down; return every recorded object that is still there."""
    world.remember()
    world.member.close()
    world.admin.close()
    bed.testbed_down(base_dir=world.base_dir)
    return leftovers(world.seen)


def _story(world: World, result: DemoResult, progress: Progress, *, keep: bool) -> None:
    ref = world.ref
    progress("applying n1-n2-n3-n4: links 100, 10 and 100 Mbit/s; n1 on host1, n2 and n3 on "
             "host2, n4 on host3")
    status = apply_and_wait(world.member, ref, line_topology())
    world.remember()
    progress("routes: ip_forward in n2 and n3, routes in every sliver")
    route_line(world.member, ref, status)
    far = _addresses(status)["n4"][0]
    progress(f"ping n1 -> n4 ({far}) across three hosts")
    result.rtt_ms = ping_rtt(world.member, ref, "n1", far)
    result.figures.extend(measure(world.member, ref, status, progress))
    if not keep:
        progress("deleting the slice; waiting until every agent has removed its part")
        world.member.delete_slice(ref)
        wait_released(world.base_dir)


@contextmanager
def _timed(result: DemoResult) -> Iterator[None]:
    start = time.monotonic()
    try:
        yield
    finally:
        result.seconds = time.monotonic() - start


def run_demo(*, base_dir: Path, subnet: str = "172.31.249.0/24", keep: bool = False,
             progress: Progress = lambda _: None) -> tuple[DemoResult, World | None]:
    """The whole story, torn down at the end (or on any failure or interrupt); with
    ``keep`` a successful run leaves the testbed and the slice up and returns the world."""
    result, world, kept = DemoResult(), None, False
    with _timed(result):
        try:
            world = open_world(base_dir, subnet=subnet, progress=progress)
            _story(world, result, progress, keep=keep)
            kept = keep
        except (SlicelabError, OSError, ValueError, KeyError) as exc:
            result.errors.append(f"{type(exc).__name__}: {exc}")
        finally:
            if world is not None and not kept:
                progress("tearing down the testbed and checking that nothing is left")
                result.left = close_world(world)
                shutil.rmtree(base_dir, ignore_errors=True)
    return result, world if kept else None
