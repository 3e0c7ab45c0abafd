"""Fan-out: one image from the aggregate to N node agents that are already running.

The server is the slicelab application (aggregate, node channel, image store) in uvicorn,
one process.  Each node is a process that enrolled with the server and holds the agent's
real image code (:class:`~slicelab.agent.images.SliverImages` over the signed node channel
``/agent/v1/store``: batched chunk requests, four in parallel, the agent's bandwidth cap,
its cache reports every second), then sits idle.  Only when every node is up and idle
does the clock start: the parent sets one trigger, every node plans a sliver that needs
the image (as a new desired state would make it), and the clock stops when the last node
has the image fetched, verified and unpacked.  Start-up of the node processes is not
timed: on a testbed the agents run long before an image is needed.

Reported per case (uncapped; each node capped at ``--node-mbps``): the time for N = 10
and 50 nodes (``--quick``: 2 and 5) and their ratio, the CPU seconds each node and the
server spent, and the total rate.  On one machine every node shares the two cores with
the server, so the uncapped case measures the machine; the capped case (nodes on slow
links, as real ones are) measures whether the server keeps up with many nodes.

    python bench/fanout.py [--quick] [--size-mib 64] [--node-mbps 20] [--node-dir DIR]
                           [--profile FILE]   # py-spy of the server during the largest run
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from multiprocessing.synchronize import Event as EventType
from pathlib import Path
from typing import Any

import httpx

MIB = 1 << 20
_SITE = "bench"


@dataclass(frozen=True, slots=True)
class Result:
    nodes: int
    rate: float | None
    seconds: float
    node_cpu: float  # mean CPU seconds per node while fetching
    server_cpu: float  # CPU seconds of the server process during the run


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(db: str, port: str) -> None:
    """The slicelab application on 127.0.0.1 (what ``slicelab server`` runs)."""
    import uvicorn

    from slicelab.bootstrap import build_app
    from slicelab.settings import Settings

    app = build_app(Settings.load(db=db))
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


def _tree(root: Path, size: int) -> Path:
    """Files of random bytes (1 MiB each) totalling ``size``."""
    root.mkdir(parents=True)
    rng = random.Random(1)
    for i in range(max(1, size // MIB)):
        (root / f"f{i:04d}.bin").write_bytes(rng.randbytes(MIB))
    return root


def _wait_up(url: str) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/api/v1/health", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise SystemExit("the server did not start")


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- a node ----------------------------------------------------------------------------


def _enroll(url: str, token: str, name: str) -> Any:
    from slicelab.agent.state import NodeIdentity
    from slicelab.identity.nodekey import decode_key

    inventory = {
        "cores": 2,
        "memory_mib": 1024,
        "disk_gib": 10,
        "interfaces": [],
        "devices": [],
        "host_ip": "127.0.0.1",
    }
    done = httpx.post(
        f"{url}/agent/v1/enroll",
        timeout=60,
        json={"token": token, "hostname": name, "inventory": inventory},
    )
    done.raise_for_status()
    data = done.json()
    return NodeIdentity(
        str(data["node_id"]),
        str(data["node_name"]),
        str(data["node_urn"]),
        decode_key(data["node_key"]),
    )


def node(
    index: int,
    url: str,
    token: str,
    root: str,
    rate: float | None,
    image: str,
    go: EventType,
    results: Any,
    batch_seconds: float = 0.5,
) -> None:
    """One node: enroll, build the agent's image code, report ready, wait for the trigger,
    then need ``image`` and report when it is verified and unpacked."""
    from slicelab.agent.images import ImageFetching, SliverImages
    from slicelab.domain.errors import SlicelabError
    from slicelab.images.cache import Quota
    from slicelab.images.fetch import FetchOptions

    identity = _enroll(url, token, Path(root).name)
    woken = threading.Event()
    images = SliverImages(
        Path(root),
        server=url,
        quota=Quota(1 << 40),
        identity=lambda: identity,
        wake=woken.set,
        options=FetchOptions(parallel=4, rate=rate, batch_seconds=batch_seconds),
    )
    sliver = {"sliver_id": f"s-{index}", "image_id": image}
    results.put(("ready", index, 0.0, 0.0))
    go.wait()
    cpu = time.process_time()
    images.plan({"slivers": [sliver]}, now=time.time())
    while True:
        try:
            images.ensure_for(sliver)
            break
        except ImageFetching:
            pass
        except SlicelabError as exc:  # reported as failed; the agent retries (so do we)
            print(f"node {index}: {exc}", file=sys.stderr, flush=True)
        woken.wait(0.5)
        woken.clear()
    results.put(("done", index, time.time(), time.process_time() - cpu))
    images.close()


# -- one run ---------------------------------------------------------------------------


def _tokens(url: str, admin: str, count: int) -> list[str]:
    headers = {"Authorization": f"Bearer {admin}"}
    with httpx.Client(base_url=url + "/api/v1", headers=headers, timeout=60) as api:
        api.post("/sites", json={"name": _SITE})
        return [
            api.post(f"/sites/{_SITE}/enrollments", json={}).json()["token"] for _ in range(count)
        ]


def fan_out(
    url: str,
    admin: str,
    image: str,
    *,
    nodes: int,
    rate: float | None,
    work: Path,
    server_pid: int,
    profile: Path | None = None,
    batch_seconds: float = 0.5,
) -> Result:
    """Start ``nodes`` idle nodes, then time one image reaching all of them."""
    ctx = multiprocessing.get_context("fork")
    go, results = ctx.Event(), ctx.Queue()
    roots = [work / f"{_label(rate)}-{nodes}-{i}" for i in range(nodes)]
    procs = [
        ctx.Process(target=node, args=(i, url, t, str(r), rate, image, go, results, batch_seconds))
        for i, (t, r) in enumerate(zip(_tokens(url, admin, nodes), roots, strict=True))
    ]
    spy: subprocess.Popen[bytes] | None = None
    try:
        for proc in procs:
            proc.start()
        _collect(results, "ready", nodes, procs)
        time.sleep(1.0)  # let start-up settle: every node idle
        spy = _spy(server_pid, profile)
        server_cpu = _cpu_seconds(server_pid)
        start = time.time()
        go.set()
        done = _collect(results, "done", nodes, procs)
        server_cpu = _cpu_seconds(server_pid) - server_cpu
    finally:
        _stop_spy(spy)
        for proc in procs:
            proc.join(timeout=20)
            if proc.is_alive():
                proc.kill()
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    seconds = max(t for t, _ in done) - start
    return Result(nodes, rate, seconds, sum(c for _, c in done) / nodes, server_cpu)


def _collect(
    results: Any, kind: str, count: int, procs: list[multiprocessing.process.BaseProcess]
) -> list[tuple[float, float]]:
    found: list[tuple[float, float]] = []
    deadline = time.monotonic() + 900
    while len(found) < count:
        if time.monotonic() > deadline or any(p.exitcode not in (None, 0) for p in procs):
            raise SystemExit(f"a node failed before '{kind}'")
        try:
            what, _, at, cpu = results.get(timeout=1.0)
        except Exception:  # queue.Empty: look at the processes again
            continue
        if what == kind:
            found.append((at, cpu))
    return found


def _spy(pid: int, profile: Path | None) -> subprocess.Popen[bytes] | None:
    if profile is None:
        return None
    spy = Path(sys.executable).parent / "py-spy"
    return subprocess.Popen(
        [
            str(spy),
            "record",
            "-p",
            str(pid),
            "-o",
            str(profile),
            "-f",
            "speedscope",
            "--nonblocking",
            "-r",
            "200",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def _stop_spy(spy: subprocess.Popen[bytes] | None) -> None:
    if spy is not None:
        spy.send_signal(signal.SIGINT)
        spy.wait(timeout=60)


# -- the whole benchmark ---------------------------------------------------------------


def _start_server(work: Path) -> tuple[subprocess.Popen[bytes], str, str]:
    from slicelab.bootstrap import init_admin

    db = work / "server" / "slicelab.db"
    db.parent.mkdir(parents=True)
    port = _free_port()
    env = {**os.environ, "SLICELAB_DATA_DIR": str(db.parent)}
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(db), str(port)], env=env)
    url = f"http://127.0.0.1:{port}"
    _wait_up(url)
    return server, url, init_admin(db=str(db), name="admin", new_token=True)


def _publish(url: str, admin: str, tree: Path, work: Path) -> str:
    from slicelab.sdk import Client
    from slicelab.sdk.images import ImageClient

    with Client(url, admin, timeout=600) as client:
        done = ImageClient.of(client, cache=work / "publisher").upload("fanout", tree)
    return done.info.manifest


def run(
    work: Path,
    *,
    size: int,
    counts: tuple[int, int],
    nodes_dir: Path,
    rates: list[float | None],
    profile: Path | None,
    batch_seconds: float = 0.5,
) -> list[Result]:
    server, url, admin = _start_server(work)
    try:
        started = time.monotonic()
        image = _publish(url, admin, _tree(work / "tree", size), work)
        print(f"published {size // MIB} MiB in {time.monotonic() - started:.1f} s", flush=True)
        results = []
        for rate in rates:
            for n in counts:
                spy = profile if profile is not None and n == max(counts) else None
                if spy is not None:
                    spy = spy.with_name(
                        f"{spy.stem}-{'capped' if rate else 'uncapped'}{spy.suffix}"
                    )
                results.append(
                    fan_out(
                        url,
                        admin,
                        image,
                        nodes=n,
                        rate=rate,
                        work=nodes_dir,
                        server_pid=server.pid,
                        profile=spy,
                        batch_seconds=batch_seconds,
                    )
                )
    finally:
        server.terminate()
        server.wait(timeout=30)
    return results


def _label(rate: float | None) -> str:
    return "uncapped" if rate is None else f"capped_{rate / 125_000:g}mbps"


def report(results: list[Result], *, size: int, counts: tuple[int, int]) -> None:
    mib = size / MIB
    print(
        f"{'case':<18} {'nodes':>5} {'seconds':>8} {'MiB/s total':>12} "
        f"{'node CPU s':>11} {'server CPU s':>13} {'CPU ms/MiB node':>16}"
    )
    for r in results:
        print(
            f"{_label(r.rate):<18} {r.nodes:>5} {r.seconds:>8.2f} "
            f"{r.nodes * mib / r.seconds:>12.1f} {r.node_cpu:>11.2f} {r.server_cpu:>13.2f} "
            f"{1000 * r.node_cpu / mib:>16.1f}"
        )
    small, large = counts
    for rate in dict.fromkeys(r.rate for r in results):
        by = {r.nodes: r for r in results if r.rate == rate}
        label = _label(rate)
        print(f"fanout_{label}_{small}_nodes: {by[small].seconds:.2f} s")
        print(f"fanout_{label}_{large}_nodes: {by[large].seconds:.2f} s")
        print(
            f"fanout_{label}_ratio_{large}_to_{small}: "
            f"{by[large].seconds / by[small].seconds:.2f} x"
        )
        print(f"fanout_{label}_node_cpu_per_mib: {1000 * by[large].node_cpu / mib:.1f} ms")
        print(
            f"fanout_{label}_server_cpu_per_node_mib: "
            f"{1000 * by[large].server_cpu / (large * mib):.1f} ms"
        )


def main() -> None:
    from slicelab.images.fetch import FetchOptions

    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 and 5 nodes, 16 MiB")
    parser.add_argument("--size-mib", type=int, default=None)
    parser.add_argument(
        "--node-mbps",
        type=float,
        default=20.0,
        help="the capped case: each node's download cap (Mbit/s)",
    )
    parser.add_argument("--only", choices=("capped", "uncapped"), default=None)
    parser.add_argument(
        "--nodes",
        type=int,
        nargs=2,
        default=None,
        metavar=("SMALL", "LARGE"),
        help="the two node counts (default 10 50; --quick 2 5)",
    )
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=FetchOptions().batch_seconds,
        help="a capped node's batch, in seconds at its cap",
    )
    parser.add_argument(
        "--node-dir",
        type=Path,
        default=None,
        help="where the node caches go (default: the work dir)",
    )
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="py-spy the server during the largest runs (speedscope JSON)",
    )
    args = parser.parse_args()
    counts = (2, 5) if args.quick else (10, 50)
    if args.nodes:
        counts = (args.nodes[0], args.nodes[1])
    size = (args.size_mib or (16 if args.quick else 64)) * MIB
    rates: list[float | None] = [None, args.node_mbps * 125_000]
    if args.only:
        rates = [None] if args.only == "uncapped" else [args.node_mbps * 125_000]
    with (
        tempfile.TemporaryDirectory(prefix="slicelab-fanout-") as tmp,
        tempfile.TemporaryDirectory(prefix="slicelab-fanout-", dir=args.node_dir) as nodes,
    ):
        results = run(
            Path(tmp),
            size=size,
            counts=counts,
            nodes_dir=Path(nodes),
            rates=rates,
            profile=args.profile,
            batch_seconds=args.batch_seconds,
        )
    report(results, size=size, counts=counts)


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
