"""Fan-out: one image from one image server to N node caches at once.

The server is the image store's router in uvicorn (one process, as at an aggregate); each
node is a separate process running the agent's fetch path (an
:class:`~slicelab.images.cache.ImageCache`: batched chunk requests, four in parallel) that
fetches and unpacks the image.  Reported: the time until every node has the image, for
N = 10 and 50 (``--quick``: 2 and 5), and their ratio.

``--node-dir`` puts the node caches elsewhere (e.g. /dev/shm: on one machine all nodes
share one disk, which real nodes do not); ``--node-mbps`` caps each node's download rate
as the agent's ``bandwidth_cap_mbps`` does (a site's uplinks), so that the ratio shows
whether the server keeps up rather than how many nodes two cores can emulate.

    python bench/fanout.py [--quick] [--size-mib 64] [--node-dir DIR] [--node-mbps N]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from slicelab.images.cache import ImageCache, Quota
from slicelab.images.fetch import FetchOptions
from slicelab.images.store import ChunkStore
from slicelab.images.upload import add_directory, push_image

MIB = 1 << 20


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def serve(root: str, port: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    from slicelab.images.http import make_router
    from slicelab.images.store import ImageStore

    app = FastAPI()
    app.include_router(make_router(ImageStore(Path(root), durable=False)), prefix="/api/v1")
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


def _tree(root: Path, size: int) -> Path:
    """Files of random bytes (1 MiB each) totalling ``size``."""
    root.mkdir(parents=True)
    for i in range(max(1, size // MIB)):
        (root / f"f{i:04d}.bin").write_bytes(os.urandom(MIB))
    return root


def _node(root: str, url: str, image: str, start: float, rate: float | None) -> float:
    cache = ImageCache(Path(root), base_url=url, quota=Quota(1 << 40),
                       options=FetchOptions(parallel=4, rate=rate))
    asyncio.run(cache.materialize(image))
    return time.monotonic() - start


def fan_out(url: str, image: str, work: Path, nodes: int, rate: float | None) -> float:
    """Seconds until all ``nodes`` hold the image (processes started together)."""
    start = time.monotonic()
    roots = [str(work / f"n{nodes}-{i}") for i in range(nodes)]
    try:
        with multiprocessing.get_context("fork").Pool(nodes) as pool:
            times = pool.starmap(_node, [(r, url, image, start, rate) for r in roots])
    finally:
        for root in roots:
            shutil.rmtree(root, ignore_errors=True)
    return max(times)


def _wait(url: str) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        try:
            httpx.get(url + "images", timeout=1)
            return
        except httpx.TransportError:
            time.sleep(0.1)
    raise SystemExit("the image server did not start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 and 5 nodes, 16 MiB")
    parser.add_argument("--size-mib", type=int, default=None)
    parser.add_argument("--node-dir", type=Path, default=None,
                        help="where the node caches go (default: the work dir)")
    parser.add_argument("--node-mbps", type=float, default=None,
                        help="cap each node's download (Mbit/s)")
    args = parser.parse_args()
    small, large = (2, 5) if args.quick else (10, 50)
    size = (args.size_mib or (16 if args.quick else 64)) * MIB
    rate = args.node_mbps * 125_000 if args.node_mbps else None
    with tempfile.TemporaryDirectory(prefix="slicelab-fanout-") as tmp, \
            tempfile.TemporaryDirectory(prefix="slicelab-fanout-", dir=args.node_dir) as nodes:
        run(Path(tmp), size=size, counts=(small, large), nodes_dir=Path(nodes), rate=rate)


def run(work: Path, *, size: int, counts: tuple[int, int], nodes_dir: Path,
        rate: float | None) -> None:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/api/v1/"
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(work / "server"),
                               str(port)])
    try:
        _wait(url)
        store = ChunkStore(work / "publisher", durable=False)
        manifest = add_directory(store, _tree(work / "tree", size), name="fanout",
                                 version="1", work=work)
        with httpx.Client(base_url=url, timeout=60) as client:
            push_image(store, manifest, client=client)
        seconds = {n: fan_out(url, manifest.id, nodes_dir, n, rate) for n in counts}
    finally:
        server.terminate()
        server.wait(timeout=20)
    _print(size, seconds, counts)


def _print(size: int, seconds: dict[int, float], counts: tuple[int, int]) -> None:
    small, large = counts
    print(f"{'nodes':>6} {'seconds':>9} {'MiB/s total':>12}")
    for n, s in seconds.items():
        print(f"{n:>6} {s:>9.2f} {n * size / MIB / s:>12.1f}")
    ratio = seconds[large] / seconds[small]
    print(f"fanout_{small}_nodes: {seconds[small]:.2f} s")
    print(f"fanout_{large}_nodes: {seconds[large]:.2f} s")
    print(f"fanout_ratio_{large}_to_{small}: {ratio:.2f} x")


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--serve":
        serve(sys.argv[2], sys.argv[3])
    else:
        main()
