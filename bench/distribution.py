"""Image distribution: bytes sent for an update, resume cost, and chunking throughput.

Makes a synthetic image (1 MiB blocks alternating random and compressible text), then a
new version with ~1% of its bytes overwritten, in a few large regions (one per 32 MiB) and
in many small ones (~10 KB each: 256 for 256 MiB), and measures:

* bytes that cross TCP (counted by a proxy on 127.0.0.1) for a node holding v1 to get v2
  from a slicelab image server, against the bytes that changed; beside rsync (pull from an
  rsync daemon on 127.0.0.1 with --no-whole-file, bytes from its --stats) and casync
  (chunk files the v2 index adds to a store holding v1, plus the index itself);
* chunks sent again when a fetching process is SIGKILLed at random moments and restarted;
* content-defined chunking + BLAKE3 hashing throughput on one core.

Fan-out to 10/50 agents needs the multi-host testbed and is not measured here.
Run: python bench/distribution.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import uvicorn
from fastapi import FastAPI

from slicelab.images.cache import ImageCache, Quota
from slicelab.images.chunker import chunk_bytes
from slicelab.images.fetch import FetchOptions, Progress, RetryPolicy
from slicelab.images.http import make_router
from slicelab.images.manifest import Manifest
from slicelab.images.store import ChunkStore, ImageStore
from slicelab.images.upload import add_file, push_image

MIB = 1 << 20


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- data --------------------------------------------------------------------------------


def make_image(size: int, seed: int) -> bytes:
    rng = random.Random(seed)
    text = b"".join(
        b"/usr/lib/pkg%05d/file%03d.conf: option=%d\n" % (i, i % 997, i * 7)
        for i in range(MIB // 30)
    )[:MIB]
    blocks = [rng.randbytes(MIB) if i % 2 else text for i in range(size // MIB)]
    return b"".join(blocks)


def mutate(data: bytes, *, regions: int, fraction: float, seed: int) -> tuple[bytes, int]:
    """Overwrite ``fraction`` of ``data`` with random bytes in ``regions`` scattered places."""
    rng = random.Random(seed)
    out = bytearray(data)
    length = int(len(data) * fraction / regions)
    slot = len(data) // regions
    for i in range(regions):
        start = i * slot + rng.randrange(0, slot - length)
        out[start : start + length] = rng.randbytes(length)
    changed = _count_changed(data, bytes(out))
    return bytes(out), changed


def _count_changed(a: bytes, b: bytes) -> int:
    window = 1 << 16
    total = 0
    for start in range(0, len(a), window):
        x, y = a[start : start + window], b[start : start + window]
        if x != y:
            total += sum(1 for p, q in zip(x, y, strict=True) if p != q)
    return total


# -- servers -----------------------------------------------------------------------------


class Server:
    """The image router in uvicorn on 127.0.0.1, counting chunks sent."""

    def __init__(self, root: Path) -> None:
        self.store = ImageStore(root, durable=False)
        self.hits: collections.Counter[str] = collections.Counter()
        self.port = free_port()
        app = FastAPI()
        app.include_router(
            make_router(self.store, served=lambda h: self.hits.update([h])), prefix="/api/v1"
        )

        config = uvicorn.Config(
            app, host="127.0.0.1", port=self.port, log_level="error", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/"

    def __enter__(self) -> Server:
        self._thread.start()
        while not self._server.started:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class CountingProxy:
    """A TCP proxy on 127.0.0.1 that counts bytes in both directions (``bytes``) and the
    bytes it delivered to clients (``down``)."""

    def __init__(self, upstream: int) -> None:
        self.upstream, self.port = upstream, free_port()
        self.bytes = 0
        self.down = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/"

    def __enter__(self) -> CountingProxy:
        self._thread.start()
        start = asyncio.start_server(self._handle, "127.0.0.1", self.port)
        asyncio.run_coroutine_threadsafe(start, self._loop).result()
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    async def _handle(self, cr: asyncio.StreamReader, cw: asyncio.StreamWriter) -> None:
        ur, uw = await asyncio.open_connection("127.0.0.1", self.upstream)
        await asyncio.gather(
            self._pipe(cr, uw), self._pipe(ur, cw, down=True), return_exceptions=True
        )
        for writer in (cw, uw):
            writer.close()

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, down: bool = False
    ) -> None:
        while data := await reader.read(65536):
            self.bytes += len(data)
            writer.write(data)
            await writer.drain()
            if down:
                self.down += len(data)
        writer.close()


# -- measurements ------------------------------------------------------------------------


def publish(server: Server, work: Path, data: bytes, version: str) -> Manifest:
    source = ChunkStore(work / "publisher", durable=False)
    path = work / f"v{version}.img"
    path.write_bytes(data)
    manifest = add_file(source, path, name="bench", version=version)
    with httpx.Client(base_url=server.url, timeout=60) as client:
        push_image(source, manifest, client=client)
    return manifest


def slicelab_update_bytes(server: Server, work: Path, old: Manifest, new: Manifest) -> int:
    node = work / f"node-{new.id[:8]}"
    seed = ChunkStore(node / "store", durable=False)  # the node already holds v1
    for part, ref in zip(server.store.chunks.read_stream(old), old.chunks, strict=True):
        seed.put(ref.hash, part)
    seed.put_manifest(old)
    with CountingProxy(server.port) as proxy:
        cache = ImageCache(node, base_url=proxy.url, quota=Quota(1 << 40))
        asyncio.run(cache.fetch(new.id, base=old.id))
        counted = proxy.bytes
    shutil.rmtree(node)
    return counted


def rsync_update_bytes(work: Path, old: Path, new: Path) -> int:
    if shutil.which("rsync") is None:
        return -1
    module, dest = work / "rsync-src", work / "rsync-dst"
    module.mkdir()
    dest.mkdir()
    shutil.copy(new, module / "image.bin")
    shutil.copy(old, dest / "image.bin")
    port = free_port()
    conf = work / "rsyncd.conf"
    conf.write_text(f"use chroot = no\n[img]\npath = {module}\nread only = yes\n")
    daemon = subprocess.Popen(
        [
            "rsync",
            "--daemon",
            "--no-detach",
            f"--config={conf}",
            f"--port={port}",
            "--address=127.0.0.1",
        ]
    )
    try:
        time.sleep(0.5)
        out = subprocess.run(
            [
                "rsync",
                "-z",
                "--ignore-times",
                "--no-whole-file",
                "--stats",
                f"rsync://127.0.0.1:{port}/img/image.bin",
                str(dest / "image.bin"),
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
    finally:
        daemon.terminate()
        daemon.wait()
    sent = int(re.search(r"Total bytes sent: ([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    received = int(re.search(r"Total bytes received: ([\d,]+)", out).group(1).replace(",", ""))  # type: ignore[union-attr]
    return sent + received


def casync_update_bytes(work: Path, old: Path, new: Path) -> int:
    if shutil.which("casync") is None:
        return -1
    store = work / "casync.castr"
    subprocess.run(
        ["casync", "make", f"--store={store}", str(work / "v1.caibx"), str(old)],
        check=True,
        capture_output=True,
    )
    before = {p: p.stat().st_size for p in store.rglob("*.cacnk")}
    index = work / "v2.caibx"
    subprocess.run(
        ["casync", "make", f"--store={store}", str(index), str(new)],
        check=True,
        capture_output=True,
    )
    added = sum(p.stat().st_size for p in store.rglob("*.cacnk") if p not in before)
    return added + index.stat().st_size


@dataclass(frozen=True, slots=True)
class Resume:
    """What the interruptions cost: kills survived, chunks the server sent more than once
    (counted as it sends them), bytes delivered to the node while it was being killed, and
    bytes delivered beyond one clean fetch (counted by a proxy), also in mean chunks (the
    clean fetch's bytes per chunk)."""

    kills: int
    resent_chunks: int
    killed_bytes: int
    extra_bytes: int
    chunk_bytes: float

    @property
    def extra_chunks(self) -> float:
        return self.extra_bytes / self.chunk_bytes


KILL_WINDOW = (0.05, 1.5)  # seconds after the child's first progress line


def resume_cost(
    server: Server, work: Path, image: Manifest, *, kills: int, seconds: float, batch_seconds: float
) -> Resume:
    """SIGKILL a fetching child ``kills`` times at random moments, then let it finish."""
    rate = image.size / seconds
    rng = random.Random(11)
    with CountingProxy(server.port) as proxy:
        assert _child_round(
            work / "clean-node", proxy.url, image.id, 0.0, batch_seconds, kill_after=None
        )
        clean = proxy.down
        shutil.rmtree(work / "clean-node")
        root = work / "resume-node"
        server.hits.clear()
        proxy.down = 0
        done = 0
        for _ in range(kills):
            if _child_round(
                root, proxy.url, image.id, rate, batch_seconds, kill_after=rng.uniform(*KILL_WINDOW)
            ):
                break
            done += 1
        killed = proxy.down
        assert _child_round(root, proxy.url, image.id, 0.0, batch_seconds, kill_after=None)
        total = proxy.down
    resent = sum(n - 1 for n in server.hits.values() if n > 1)
    return Resume(done, resent, killed, total - clean, clean / len(image.unique_hashes()))


def _child_round(
    root: Path, url: str, image: str, rate: float, batch_seconds: float, *, kill_after: float | None
) -> bool:
    argv = [
        sys.executable,
        __file__,
        "--child",
        str(root),
        url,
        image,
        str(rate),
        str(batch_seconds),
    ]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    try:
        first = child.stdout.readline()  # type: ignore[union-attr]
        if kill_after is None or not first.startswith("progress"):
            return child.wait(timeout=600) == 0
        time.sleep(kill_after)
        if child.poll() is not None:
            return child.returncode == 0
        child.send_signal(signal.SIGKILL)
        child.wait()
        return False
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


def child_main(root: str, url: str, image: str, rate: str, batch_seconds: str) -> None:
    options = FetchOptions(
        parallel=1,
        rate=float(rate) or None,
        burst=64 * 1024,
        batch_seconds=float(batch_seconds),
        retry=RetryPolicy(base_delay=0.05, max_delay=0.5),
    )
    cache = ImageCache(Path(root), base_url=url, quota=Quota(1 << 40), options=options)

    def show(progress: Progress) -> None:
        print(f"progress {progress.done} {progress.total}", flush=True)

    asyncio.run(cache.fetch(image, progress=show))


def throughput(data: bytes) -> float:
    """MB/s of chunking + hashing per second of this thread's CPU time (one core)."""
    best = 0.0
    for _ in range(3):
        started = time.thread_time()
        count = sum(1 for _ in chunk_bytes(data))
        best = max(best, len(data) / (time.thread_time() - started) / 1e6)
        assert count > 0
    return best


# -- main --------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="32 MiB image, 5 kills")
    parser.add_argument("--resume-only", action="store_true", help="only the resume measurement")
    parser.add_argument(
        "--batch-seconds",
        type=float,
        default=FetchOptions().batch_seconds,
        help="a capped fetch's batch, in seconds at the cap",
    )
    parser.add_argument("--child", nargs=5, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child_main(*args.child)
        return
    size = 32 * MIB if args.quick else 256 * MIB
    kills = 5 if args.quick else 20
    with tempfile.TemporaryDirectory(prefix="slicelab-bench-") as tmp:
        run(
            Path(tmp),
            size=size,
            kills=kills,
            seconds=6.0 if args.quick else 30.0,
            updates=not args.resume_only,
            batch_seconds=args.batch_seconds,
        )


def run(
    work: Path,
    *,
    size: int,
    kills: int,
    seconds: float,
    updates: bool = True,
    batch_seconds: float = FetchOptions().batch_seconds,
) -> None:
    v1 = make_image(size, seed=1)
    mbps = throughput(v1)
    old = work / "old.img"
    old.write_bytes(v1)
    rows: list[tuple[str, int, int, int, int]] = []
    with Server(work / "server") as server:
        first = publish(server, work, v1, "1")
        scattered = max(1, int(size * 0.01 / 10_240))  # regions of ~10 KB
        for regions in (size // (32 * MIB), scattered) if updates else ():
            v2, changed = mutate(v1, regions=regions, fraction=0.01, seed=1000 + regions)
            scenario = work / f"s{regions}"
            scenario.mkdir()
            new = scenario / "new.img"
            new.write_bytes(v2)
            manifest = publish(server, scenario, v2, f"2-{regions}")
            rows.append(
                (
                    f"{regions} regions",
                    changed,
                    slicelab_update_bytes(server, scenario, first, manifest),
                    rsync_update_bytes(scenario, old, new),
                    casync_update_bytes(scenario, old, new),
                )
            )
        image = publish(server, work, make_image(min(size, 64 * MIB), seed=5), "resume")
        resume = resume_cost(
            server, work, image, kills=kills, seconds=seconds, batch_seconds=batch_seconds
        )
    report(rows, size=size, resume=resume, mbps=mbps)


def report(
    rows: list[tuple[str, int, int, int, int]], *, size: int, resume: Resume, mbps: float
) -> None:
    print(
        f"image {size // MIB} MiB, ~1% of bytes overwritten in N regions; "
        "bytes on the wire for the update"
    )
    print(
        f"{'change':<12} {'changed':>11} {'slicelab':>11} {'ratio':>6} {'rsync -z':>11} "
        f"{'ratio':>6} {'casync':>11} {'ratio':>6}"
    )
    for name, changed, ours, rsync, casync in rows:
        cas = f"{casync:>11} {casync / changed:>6.2f}" if casync >= 0 else f"{'not installed':>18}"
        print(
            f"{name:<12} {changed:>11} {ours:>11} {ours / changed:>6.2f} {rsync:>11} "
            f"{rsync / changed:>6.2f} {cas}"
        )
    kills = max(resume.kills, 1)
    print(
        f"resume: {resume.kills} SIGKILLs of the fetching process, "
        f"{KILL_WINDOW[0]}-{KILL_WINDOW[1]} s after it starts; "
        f"{resume.killed_bytes / MIB:.1f} MiB delivered to the killed processes; "
        "the server sent "
        f"{resume.resent_chunks} chunks again; the proxy delivered {resume.extra_bytes} "
        f"bytes beyond one clean fetch = {resume.extra_chunks:.1f} mean chunks "
        f"({resume.chunk_bytes:.0f} B)"
    )
    print(f"chunking + BLAKE3 on one core: {mbps:.0f} MB/s")
    print("fan-out to 10/50 nodes: see bench/fanout.py")
    for name, changed, ours, rsync, casync in rows:
        key = name.replace(" ", "_")
        print(f"update_ratio_slicelab_{key}: {ours / changed:.2f} x")
        print(f"update_ratio_rsync_{key}: {rsync / changed:.2f} x")
        if casync >= 0:
            print(f"update_ratio_casync_{key}: {casync / changed:.2f} x")
        else:
            print(f"update_ratio_casync_{key}: not installed")
    print(
        f"resent_chunks_per_interruption: {resume.resent_chunks / kills:.2f} chunks (server count)"
    )
    print(
        f"resent_bytes_per_interruption: {resume.extra_bytes / kills:.0f} B = "
        f"{resume.extra_chunks / kills:.2f} mean chunks (proxy count)"
    )
    print(f"chunk_hash_throughput: {mbps:.0f} MB/s")


if __name__ == "__main__":
    main()
