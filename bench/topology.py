"""Topology build and teardown: slicelab's node runtime beside Mininet 2.3.

    .venv/bin/python bench/topology.py --quick     # 10 slivers, seconds
    .venv/bin/python bench/topology.py             # 10, 100 and 1000 slivers, minutes

Needs root, the Debian packages ``mininet``, ``bridge-utils`` (Mininet's ``LinuxBridge``),
``iperf3``, ``busybox-static`` and ``dropbear-bin``.

Topology for both tools: N slivers (hosts) in N/2 pairs; each pair is joined by one virtual
link of ``--capacity`` Mbit/s, shaped with tbf on every interface in both directions. On
slicelab's side a link of two slivers on one host is a veth pair between their namespaces
(a tbf on each end), and a link whose other end is on another host is a VXLAN device
inside the sliver's namespace (a tbf on it; the remote host shapes the other direction);
on Mininet's, a ``LinuxBridge`` with one ``TCLink`` (``use_tbf``) per host, no controller.

* one host: one ``NodeRuntime`` in this process, in the root network namespace;
* three hosts: three network namespaces on an underlay bridge, each running a
  ``NodeRuntime`` in a worker process (``nsenter --net``); the two slivers of every pair
  sit on different hosts, so every link is VXLAN (a VNI per link). The hosts build in
  parallel, as real nodes would.

Build is ``ensure_link`` for every link and one ``ensure_slivers`` of all slivers;
teardown is one ``remove_slivers``, one ``remove_links`` and ``cleanup_all``; the slivers'
files go to a trash directory that a background thread empties, and the time until that
is done ("disk freed") is reported beside the teardown.

Reported: build and teardown time (median over ``--reps``) and their ratio to Mininet's
in the same run (and the median of the build ratios within each repetition, where the two
ran back to back), the time per kernel object (ledger record), sliver ready time (slivers
built one at a time, the image already on the node: ``ensure_sliver`` until it returns
with the sliver's init PID 1 of its namespace, and until its SSH server accepts a
connection), iperf3 goodput over a few links in both directions against the configured
capacity, and the lowest and highest 1-minute load average seen at a repetition's start
(the machine may be shared: absolute times move with the load, ratios less).

Everything made is recorded in a ledger (the runtime's, and this script's own for the
host namespaces) and removed by id, also after Ctrl-C or SIGTERM; a run that was killed
is cleaned up by the next one. Kernel objects with this benchmark's names are counted
before and after, and the count of what is left is the last figure.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import ipaddress
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import FrameType
from typing import Any

from pyroute2 import IPRoute, netns
from rich.console import Console
from rich.table import Table

from slicelab.agent.ledger import Ledger, unwind
from slicelab.agent.net import names
from slicelab.agent.net.nat import Nft
from slicelab.agent.net.netlink import Netlink
from slicelab.agent.runtime.node import NodeRuntime
from slicelab.agent.runtime.removers import make_removers
from slicelab.agent.spec import InterfaceSpec, LinkSpec, PortRange, SliverSpec, SliverStatus
from slicelab.domain.errors import SlicelabError
from slicelab.images.rootfs import build_minimal

__all__ = ["Layout", "NodeBench", "Underlay", "leftovers", "main", "plan"]

STATE = Path("/var/tmp/slicelab-bench-topology")
MININET_SCRIPT = Path(__file__).with_name("_mininet_baseline.py")
SYSTEM_PYTHON = "/usr/bin/python3"
SINGLE_PREFIX = "bts"
HOST_PREFIXES = ("bt0", "bt1", "bt2")
UNDERLAY_NET = ipaddress.IPv4Network("192.168.214.0/24")
UNDERLAY_BRIDGE = "btubr"
EXPERIMENT_NET = ipaddress.IPv4Network("10.216.0.0/16")
_MININET_NAME = re.compile(r"^[hs]\d+(-eth\d+)?$")


# the plan: which slivers and links, on which host --------------------------------------
@dataclass(frozen=True)
class Layout:
    """``slivers`` slivers in pairs over ``hosts`` hosts, links of ``capacity`` Mbit/s."""

    slivers: int
    hosts: int = 1
    capacity: float = 100.0


def sliver_id(index: int) -> str:
    return f"s{index}"


def host_of(layout: Layout, index: int) -> int:
    """Pair p has its first sliver on host p % H and its second on host (p + 1) % H."""
    pair, side = divmod(index, 2)
    return (pair + side) % layout.hosts


def underlay_ip(host: int) -> str:
    return str(UNDERLAY_NET.network_address + host + 1)


def pair_address(pair: int, side: int) -> str:
    return f"{EXPERIMENT_NET.network_address + 4 * pair + side + 1}/30"


def control_subnet(layout: Layout, host: int) -> str:
    return f"10.214.{16 * host if layout.hosts > 1 else 0}.0/20"


def _sliver_spec(layout: Layout, index: int, image: Path) -> SliverSpec:
    pair, side = divmod(index, 2)
    iface = InterfaceSpec(link_id=f"l{pair}", ifname="exp0", ipv4=pair_address(pair, side),
                          capacity_mbps=layout.capacity)
    return SliverSpec(sliver_id=sliver_id(index), hostname=f"{sliver_id(index)}.bench.topo.test",
                      cores=0.1, memory_mib=32, pids_max=32, image_dir=image,
                      ports=PortRange(20000 + index, 1), interfaces=(iface,))


def _link_spec(layout: Layout, pair: int, host: int) -> LinkSpec:
    ends = [2 * pair, 2 * pair + 1]
    members = tuple(sliver_id(i) for i in ends if host_of(layout, i) == host)
    others = sorted({host_of(layout, i) for i in ends} - {host})
    remotes = tuple(underlay_ip(h) for h in others)
    return LinkSpec(link_id=f"l{pair}", vni=1000 + pair, capacity_mbps=layout.capacity,
                    members=members, remotes=remotes,
                    local_ip=underlay_ip(host) if remotes else None)


def plan(layout: Layout, *, host: int, image: Path) -> tuple[list[SliverSpec], list[LinkSpec]]:
    """The slivers and links ``host`` builds (a link is on every host with a member)."""
    mine = [i for i in range(layout.slivers) if host_of(layout, i) == host]
    pairs = sorted({i // 2 for i in mine})
    return ([_sliver_spec(layout, i, image) for i in mine],
            [_link_spec(layout, p, host) for p in pairs])


# one node: a NodeRuntime, timed -----------------------------------------------------------
@dataclass
class BuildResult:
    seconds: float
    records: int = 0


class NodeBench:
    """A NodeRuntime that builds a plan and tears it down, timing both."""

    def __init__(self, *, prefix: str, subnet: str, host_ip: str) -> None:
        self.state_dir = STATE / prefix
        self.runtime = NodeRuntime(state_dir=self.state_dir, prefix=prefix,
                                   control_subnet=subnet, host_ip=host_ip)
        self.runtime.cleanup_all()  # whatever an interrupted run left, by its ledger ids
        self._slivers: list[str] = []
        self._links: list[str] = []

    def build(self, slivers: Sequence[SliverSpec], links: Sequence[LinkSpec]) -> BuildResult:
        result = BuildResult(seconds=0.0)
        started = time.perf_counter()
        for link in links:
            self._links.append(link.link_id)
            self.runtime.ensure_link(link)
        self._slivers += [spec.sliver_id for spec in slivers]
        self.runtime.ensure_slivers(slivers)
        result.seconds = time.perf_counter() - started
        result.records = len(self.runtime.ledger.records())
        return result

    def add_sliver(self, spec: SliverSpec) -> SliverStatus:
        """ensure_sliver, remembered for teardown."""
        self._slivers.append(spec.sliver_id)
        return self.runtime.ensure_sliver(spec)

    def teardown(self) -> tuple[float, float]:
        """Remove every sliver and link, then the node's shared objects: the seconds until
        that returned, and until the slivers' files were deleted from the disk too."""
        started = time.perf_counter()
        self.runtime.remove_slivers(list(reversed(self._slivers)))
        self.runtime.remove_links(list(reversed(self._links)))
        self.runtime.cleanup_all()
        done = time.perf_counter() - started
        self.runtime.wait_reclaimed()
        self._slivers, self._links = [], []
        return done, time.perf_counter() - started

    def close(self) -> None:
        self.runtime.cleanup_all()
        self.runtime.close()


def netns_of(layout: Layout, index: int) -> str:
    prefix = SINGLE_PREFIX if layout.hosts == 1 else HOST_PREFIXES[host_of(layout, index)]
    return names.netns_name(prefix, sliver_id(index))


# three hosts: namespaces on an underlay bridge, a worker per host ---------------------
class Underlay:
    """Host namespaces joined by a bridge; recorded in a ledger, removed by id."""

    def __init__(self, hosts: int) -> None:
        self.hosts = [f"slicelab-bench-{p}" for p in HOST_PREFIXES[:hosts]]
        self.ledger = Ledger(STATE / "underlay.sqlite3")
        self.net = Netlink()
        self.removers = make_removers(self.net, Nft())
        self.remove()

    def create(self) -> None:
        with self.ledger.step("bench", "link", UNDERLAY_BRIDGE) as bridge:
            bridge.data["ifindex"] = self.net.add_bridge(UNDERLAY_BRIDGE)
        for host, name in enumerate(self.hosts):
            with self.ledger.step("bench", "netns", name) as rec:
                self.net.create_netns(name)
            with self.ledger.step("bench", "link", f"btuv{host}", parent=rec.id) as veth:
                veth.data["ifindex"], inner = self.net.add_veth(f"btuv{host}", peer="uplink",
                                                                ns=name)
            self.net.configure(veth.data["ifindex"], master=bridge.data["ifindex"], state="up")
            self.net.configure(inner, ns=name, state="up")
            self.net.add_address(inner, f"{underlay_ip(host)}/24", ns=name)

    def remove(self) -> None:
        unwind(self.ledger, "bench", self.removers)

    def close(self) -> None:
        self.remove()
        self.net.close()
        self.ledger.close()


class Worker:
    """``topology.py --worker`` in a host namespace, one JSON request and answer a line."""

    def __init__(self, *, host_ns: str, host: int, layout: Layout, image: Path) -> None:
        argv = ["nsenter", f"--net=/var/run/netns/{host_ns}", "--", sys.executable,
                str(Path(__file__).resolve()), "--worker", json.dumps(
                    {"host": host, "hosts": layout.hosts, "image": str(image)})]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True, start_new_session=True)

    def send(self, request: dict[str, Any]) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()

    def receive(self) -> dict[str, Any]:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise SlicelabError(f"worker {self.proc.pid} ended (exit {self.proc.wait()})")
        answer: dict[str, Any] = json.loads(line)
        if "error" in answer:
            raise SlicelabError(f"worker {self.proc.pid}: {answer['error']}")
        return answer

    def close(self) -> None:
        """Ask the worker to clean up and quit; SIGTERM (it cleans up then too) if it hangs."""
        with contextlib.suppress(OSError, ValueError):
            self.send({"op": "quit"})
        try:
            self.proc.wait(timeout=120)
        except subprocess.TimeoutExpired:
            self.proc.terminate()
            self.proc.wait(timeout=120)


def worker_main(config: dict[str, Any]) -> int:
    """The worker's loop: build / teardown on request; cleans up at the end (process edge)."""
    host = int(config["host"])
    bench = NodeBench(prefix=HOST_PREFIXES[host], subnet=control_subnet(
        Layout(1, hosts=config["hosts"]), host), host_ip=underlay_ip(host))
    try:
        for line in sys.stdin:
            request = json.loads(line)
            if request["op"] == "quit":
                break
            try:
                answer = _serve(bench, request, config)
            except Exception as exc:  # the worker's edge: report, keep serving cleanup
                answer = {"error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer), flush=True)
    finally:
        bench.close()
    return 0


def _serve(bench: NodeBench, request: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    if request["op"] == "build":
        layout = Layout(request["slivers"], hosts=config["hosts"], capacity=request["capacity"])
        slivers, links = plan(layout, host=config["host"], image=Path(config["image"]))
        result = bench.build(slivers, links)
        return {"seconds": result.seconds, "records": result.records}
    if request["op"] == "teardown":
        seconds, reclaimed = bench.teardown()
        return {"seconds": seconds, "reclaimed": reclaimed}
    raise SlicelabError(f"unknown request {request['op']!r}")


class MultiHost:
    """Three hosts building their parts of one layout in parallel."""

    def __init__(self, *, hosts: int, image: Path) -> None:
        self.underlay = Underlay(hosts)
        self.image = image
        self.workers: list[Worker] = []

    def start(self) -> None:
        self.underlay.create()
        layout = Layout(2, hosts=len(self.underlay.hosts))
        for host, ns in enumerate(self.underlay.hosts):
            self.workers.append(Worker(host_ns=ns, host=host, layout=layout, image=self.image))

    def _all(self, request: dict[str, Any]) -> tuple[float, list[dict[str, Any]]]:
        started = time.perf_counter()
        for worker in self.workers:
            worker.send(request)
        answers = [worker.receive() for worker in self.workers]
        return time.perf_counter() - started, answers

    def build(self, layout: Layout) -> BuildResult:
        seconds, answers = self._all({"op": "build", "slivers": layout.slivers,
                                      "capacity": layout.capacity})
        return BuildResult(seconds, sum(a["records"] for a in answers))

    def teardown(self) -> tuple[float, float]:
        """Seconds until the slowest host removed everything (its own clock: the hosts
        start together), and until every host's disk was reclaimed (wall clock here)."""
        seconds, answers = self._all({"op": "teardown"})
        return max(a["seconds"] for a in answers), seconds

    def close(self) -> None:
        for worker in self.workers:
            worker.close()
        self.underlay.close()


# Mininet, run by Debian's python3 -------------------------------------------------------
def mininet(hosts: int, *, capacity: float) -> tuple[float, float]:
    """Build and teardown seconds of one Mininet network (see _mininet_baseline.py)."""
    argv = [SYSTEM_PYTHON, str(MININET_SCRIPT), "--hosts", str(hosts), "--reps", "1",
            "--bw", str(capacity)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=1800)
    finally:
        if proc.poll() is None:
            proc.terminate()  # its handler runs net.stop()
            proc.wait(timeout=300)
    if proc.returncode != 0:
        raise SlicelabError(f"the Mininet baseline failed (exit {proc.returncode})")
    row = json.loads(out.splitlines()[-1])
    return float(row["build_s"]), float(row["teardown_s"])


# shaping accuracy with iperf3, between two slivers' namespaces -------------------------
def _in_netns(ns: str, argv: Sequence[str]) -> list[str]:
    return ["nsenter", f"--net=/var/run/netns/{ns}", "--", *argv]


def iperf(*, server_ns: str, client_ns: str, server_ip: str, seconds: float,
          reverse: bool) -> float:
    """Goodput in Mbit/s from client to server (server to client when ``reverse``)."""
    server = subprocess.Popen(_in_netns(server_ns, ["iperf3", "-s", "-1", "-B", server_ip]),
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                              start_new_session=True)
    try:
        argv = ["iperf3", "-c", server_ip, "-t", str(seconds), "-J",
                *(["-R"] if reverse else [])]
        for _ in range(50):
            done = subprocess.run(_in_netns(client_ns, argv), capture_output=True, text=True,
                                  check=False, timeout=seconds + 30)
            received = json.loads(done.stdout or "{}").get("end", {}).get("sum_received")
            if done.returncode == 0 and received:
                return float(received["bits_per_second"]) / 1e6
            time.sleep(0.1)  # the server is not listening yet
        raise SlicelabError(f"iperf3 to {server_ip} failed: {done.stdout[-300:]}")
    finally:
        if server.poll() is None:
            server.kill()
        server.wait()


@dataclass(frozen=True)
class Shaping:
    link: str
    direction: str
    mbps: float
    error_pct: float


def shaping(layout: Layout, *, links: int, seconds: float) -> list[Shaping]:
    """iperf3 over the first ``links`` links, both directions."""
    found = []
    for pair in range(min(links, layout.slivers // 2)):
        a, b = 2 * pair, 2 * pair + 1
        for reverse in (False, True):
            mbps = iperf(server_ns=netns_of(layout, a), client_ns=netns_of(layout, b),
                         server_ip=pair_address(pair, 0).split("/")[0], seconds=seconds,
                         reverse=reverse)
            direction = f"{sliver_id(a)}->{sliver_id(b)}" if reverse else \
                f"{sliver_id(b)}->{sliver_id(a)}"
            error = abs(mbps - layout.capacity) / layout.capacity * 100
            found.append(Shaping(f"l{pair}", direction, mbps, error))
    return found


# sliver ready time: ensure_sliver, then until SSH accepts -------------------------------
def ssh_ready_ms(bench: NodeBench, spec: SliverSpec, *,
                 timeout: float = 10.0) -> tuple[float, float]:
    """Milliseconds from ensure_sliver until it returns (the init runs) and until the
    sliver's port 22 accepts a connection."""
    started = time.perf_counter()
    status = bench.add_sliver(spec)
    running = (time.perf_counter() - started) * 1000
    assert status.control_ip is not None
    deadline = started + timeout
    while time.perf_counter() < deadline:
        with socket.socket() as sock:
            sock.settimeout(0.2)
            if sock.connect_ex((status.control_ip, 22)) == 0:
                return running, (time.perf_counter() - started) * 1000
        time.sleep(0.002)
    raise SlicelabError(f"sliver {spec.sliver_id} did not accept SSH within {timeout} s")


# what this benchmark made and left behind -----------------------------------------------
def _ours(name: str) -> bool:
    return name.startswith(("bt", "slicelab-bench-", "slicelab-bt")) or \
        bool(_MININET_NAME.match(name))


def leftovers() -> set[str]:
    """Kernel objects named like this benchmark's: netns, links, mounts, cgroups, nft."""
    found = {f"netns {n}" for n in netns.listnetns() if _ours(n)}
    with IPRoute() as ipr:
        found |= {f"link {n}" for n in (x.get_attr("IFLA_IFNAME") for x in ipr.get_links())
                  if _ours(n)}
    with open("/proc/self/mountinfo") as info:
        found |= {f"mount {line.split()[4]}" for line in info
                  if line.split()[4].startswith(str(STATE))}
    roots = list(Path("/sys/fs/cgroup").glob("*/slicelab")) + \
        list(Path("/sys/fs/cgroup/unified").glob("slicelab"))
    found |= {f"cgroup {d}" for root in roots for d in root.glob("bt*")}
    done = subprocess.run(["nft", "-j", "list", "tables"], capture_output=True, text=True,
                          check=False, timeout=30)
    tables = json.loads(done.stdout or '{"nftables": []}')["nftables"]
    found |= {f"nft {t['table']['name']}" for t in tables
              if "table" in t and t["table"]["name"].startswith("slicelab_bt")}
    return found


# the run ------------------------------------------------------------------------------
@dataclass
class Measured:
    """Build and teardown seconds of one tool at one size, over the repetitions."""

    build: list[float] = field(default_factory=list)
    teardown: list[float] = field(default_factory=list)
    reclaimed: list[float] = field(default_factory=list)
    records: int = 0

    def median(self, which: str) -> float:
        return float(statistics.median(getattr(self, which)))


@dataclass
class Report:
    sizes: list[int]
    tools: list[str]
    results: dict[tuple[str, int], Measured] = field(default_factory=dict)
    ensure_ms: list[float] = field(default_factory=list)
    ssh_ms: list[float] = field(default_factory=list)
    shaping: dict[str, list[Shaping]] = field(default_factory=dict)
    left: set[str] = field(default_factory=set)
    load: list[float] = field(default_factory=list)  # 1-min load average at each repetition

    def at(self, tool: str, size: int) -> Measured:
        return self.results.setdefault((tool, size), Measured())


@dataclass(frozen=True)
class Options:
    sizes: list[int]
    reps: int
    hosts: int
    capacity: float
    mininet: bool
    iperf_links: int
    iperf_seconds: float
    ready_slivers: int


_MAIN_PID = os.getpid()


def _interrupt(signum: int, frame: FrameType | None) -> None:
    """SIGTERM unwinds this process like Ctrl-C (so ``finally`` cleans up).

    Forked helpers (pyroute2 forks one to open a socket in a namespace, and ends it with
    SIGTERM) inherit this handler; they die the default way instead.
    """
    if os.getpid() != _MAIN_PID:
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
        return
    raise KeyboardInterrupt(f"signal {signum}")


def _slicelab_once(bench: NodeBench | MultiHost, layout: Layout, report: Report, *,
                   tool: str, options: Options, probe: bool) -> None:
    """One build and teardown; iperf3 between them when ``probe``."""
    if isinstance(bench, NodeBench):
        slivers, links = plan(layout, host=0, image=STATE / "image")
        built = bench.build(slivers, links)
    else:
        built = bench.build(layout)
    measured = report.at(tool, layout.slivers)
    measured.build.append(built.seconds)
    measured.records = built.records
    try:
        if probe:
            report.shaping[tool] = shaping(layout, links=options.iperf_links,
                                           seconds=options.iperf_seconds)
    finally:
        down, reclaimed = bench.teardown()
        measured.teardown.append(down)
        measured.reclaimed.append(reclaimed)


def _mininet_once(report: Report, size: int, options: Options) -> None:
    build, teardown = mininet(size, capacity=options.capacity)
    measured = report.at("mininet", size)
    measured.build.append(build)
    measured.teardown.append(teardown)


def _ready(bench: NodeBench, report: Report, options: Options) -> None:
    """SSH-ready time of slivers built one at a time (no links)."""
    for index in range(options.ready_slivers):
        spec = _sliver_spec(Layout(options.ready_slivers), index, STATE / "image")
        running, ssh = ssh_ready_ms(bench, replace(spec, interfaces=()))
        report.ensure_ms.append(running)
        report.ssh_ms.append(ssh)
    bench.teardown()


def _sweep(report: Report, options: Options, single: NodeBench,
           multi: MultiHost | None) -> None:
    for size in options.sizes:
        for rep in range(1 if size >= 1000 else options.reps):
            probe = rep == 0 and size == options.sizes[0]
            report.load.append(os.getloadavg()[0])
            print(f"[{time.strftime('%H:%M:%S')}] {size} slivers, repetition {rep + 1}, "
                  f"load {report.load[-1]:.1f}", file=sys.stderr, flush=True)
            if options.mininet:
                _mininet_once(report, size, options)
            _slicelab_once(single, Layout(size, capacity=options.capacity), report,
                           tool="slicelab", options=options, probe=probe)
            if multi is not None:
                _slicelab_once(multi, Layout(size, hosts=options.hosts,
                                             capacity=options.capacity),
                               report, tool=f"slicelab {options.hosts} hosts",
                               options=options, probe=probe)


def run(options: Options) -> Report:
    """The whole benchmark; everything made is removed in the ``finally`` clauses."""
    tools = (["mininet"] if options.mininet else []) + ["slicelab"] + \
        ([f"slicelab {options.hosts} hosts"] if options.hosts > 1 else [])
    report = Report(sizes=options.sizes, tools=tools)
    build_minimal(STATE / "image")
    subnet = control_subnet(Layout(1), 0)
    single = NodeBench(prefix=SINGLE_PREFIX, subnet=subnet,
                       host_ip=str(ipaddress.IPv4Network(subnet).network_address + 1))
    multi = MultiHost(hosts=options.hosts, image=STATE / "image") if options.hosts > 1 else None
    try:
        if multi is not None:
            multi.start()
        _sweep(report, options, single, multi)
        _ready(single, report, options)
    finally:
        if multi is not None:
            multi.close()
        single.close()
    report.left = leftovers()
    return report


# output -----------------------------------------------------------------------------------
def _slug(tool: str) -> str:
    return {"mininet": "mininet", "slicelab": "slicelab"}.get(tool, "slicelab_3hosts")


def _percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _ratio(report: Report, tool: str, size: int, which: str) -> float | None:
    base = report.results.get(("mininet", size))
    if base is None or tool == "mininet":
        return None
    return report.at(tool, size).median(which) / base.median(which)


def _rep_ratio(report: Report, tool: str, size: int) -> float | None:
    """The median over repetitions of build / Mininet's build in the same repetition (the
    two run back to back, so a load that changes between repetitions cancels out)."""
    base = report.results.get(("mininet", size))
    if base is None or tool == "mininet":
        return None
    ours = report.at(tool, size).build
    return float(statistics.median(a / b for a, b in zip(ours, base.build, strict=False)))


def _size_rows(report: Report) -> Iterator[list[str]]:
    for size in report.sizes:
        for tool in report.tools:
            m = report.at(tool, size)
            build, down = m.median("build"), m.median("teardown")
            freed = f"{m.median('reclaimed'):.2f}" if m.reclaimed else "-"
            ratios = [_ratio(report, tool, size, w) for w in ("build", "teardown")]
            yield [str(size), tool, str(len(m.build)), f"{build:.2f}",
                   f"{build / size * 1000:.1f}", f"{down:.2f}", freed,
                   *("-" if r is None else f"{r:.2f}" for r in ratios),
                   str(m.records or "-"),
                   f"{build / m.records * 1000:.2f}" if m.records else "-"]


def _figures(report: Report) -> Iterator[tuple[str, float, str]]:
    for size in report.sizes:
        for tool in report.tools:
            m, slug = report.at(tool, size), _slug(tool)
            yield f"{slug}_build_{size}", m.median("build"), "s"
            yield f"{slug}_teardown_{size}", m.median("teardown"), "s"
            if m.reclaimed:
                yield f"{slug}_disk_reclaimed_{size}", m.median("reclaimed"), "s"
            for which in ("build", "teardown"):
                ratio = _ratio(report, tool, size, which)
                if ratio is not None:
                    yield f"{slug}_{which}_{size}_ratio_vs_mininet", ratio, "x"
            paired = _rep_ratio(report, tool, size)
            if paired is not None:
                yield f"{slug}_build_{size}_ratio_per_repetition_median", paired, "x"
            if m.records:
                per_object = m.median("build") / m.records * 1000
                yield f"{slug}_ms_per_kernel_object_{size}", per_object, "ms"
    yield from _ready_figures(report)


def _ready_figures(report: Report) -> Iterator[tuple[str, float, str]]:
    for name, values in (("sliver_running", report.ensure_ms), ("sliver_ssh_ready", report.ssh_ms)):
        if values:
            yield f"{name}_p50", _percentile(values, 50), "ms"
            yield f"{name}_p99", _percentile(values, 99), "ms"
    for tool, found in report.shaping.items():
        if found:
            yield f"{_slug(tool)}_shaping_max_error", max(s.error_pct for s in found), "%"
    if report.load:
        yield "load_average_min", min(report.load), "(1 min)"
        yield "load_average_max", max(report.load), "(1 min)"
    yield "leftover_kernel_objects", float(len(report.left)), "objects"


def show(report: Report, console: Console) -> None:
    table = Table(title="Topology build and teardown (pairs of slivers, shaped links)")
    for column in ("slivers", "tool", "reps", "build s", "ms/sliver", "teardown s",
                   "disk freed s", "build vs mininet", "teardown vs mininet", "kernel objects",
                   "ms/object"):
        table.add_column(column, justify="left" if column == "tool" else "right")
    for row in _size_rows(report):
        table.add_row(*row)
    console.print(table)
    shaped = Table(title="Shaping accuracy (iperf3 goodput vs configured capacity)")
    for column in ("tool", "link", "direction", "Mbit/s", "error %"):
        shaped.add_column(column)
    for tool, found in report.shaping.items():
        for s in found:
            shaped.add_row(tool, s.link, s.direction, f"{s.mbps:.1f}", f"{s.error_pct:.1f}")
    console.print(shaped)
    if report.left:
        console.print(f"[red]left behind:[/red] {sorted(report.left)}")
    for name, value, unit in _figures(report):
        print(f"{name}: {value:.3g} {unit}" if unit != "objects" else f"{name}: {value:.0f} {unit}")


def _options(argv: Sequence[str] | None) -> tuple[argparse.Namespace, Options]:
    parser = argparse.ArgumentParser(description="slicelab topology build/teardown vs Mininet")
    parser.add_argument("--quick", action="store_true", help="10 slivers, one repetition")
    parser.add_argument("--sizes", type=int, nargs="+", help="sliver counts (even)")
    parser.add_argument("--reps", type=int, help="repetitions below 1000 slivers")
    parser.add_argument("--hosts", type=int, default=3, help="hosts for the VXLAN run (1: none)")
    parser.add_argument("--capacity", type=float, default=100.0, help="link Mbit/s")
    parser.add_argument("--no-mininet", action="store_true")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    quick = args.quick
    options = Options(sizes=args.sizes or ([10] if quick else [10, 100, 1000]),
                      reps=args.reps or (1 if quick else 3), hosts=min(args.hosts, 3),
                      capacity=args.capacity, mininet=not args.no_mininet,
                      iperf_links=2 if quick else 3, iperf_seconds=1.0 if quick else 2.0,
                      ready_slivers=10 if quick else 40)
    return args, options


def main(argv: Sequence[str] | None = None) -> int:
    args, options = _options(argv)
    signal.signal(signal.SIGTERM, _interrupt)
    if args.worker:
        return worker_main(json.loads(args.worker))
    if os.geteuid() != 0:
        print("bench/topology.py needs root (network namespaces, cgroups, mounts)")
        return 2
    STATE.mkdir(parents=True, exist_ok=True)
    with open(STATE / "lock", "w") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"another bench/topology.py is running (lock {STATE / 'lock'})")
            return 2
        started = time.perf_counter()
        report = run(options)
    show(report, Console(width=150))
    print(f"wall_time: {time.perf_counter() - started:.0f} s")
    return 1 if report.left else 0


if __name__ == "__main__":
    sys.exit(main())
