from __future__ import annotations

import asyncio
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from images_harness import FaultProxy, ImageServer, corrupt_chunk, make_tree

from slicelab.images.cache import ImageCache, Quota
from slicelab.images.errors import CacheFull
from slicelab.images.fetch import FetchOptions, Progress, RetryPolicy
from slicelab.images.manifest import Manifest

FAST_RETRY = RetryPolicy(attempts=200, base_delay=0.02, max_delay=0.3)
CHILD = Path(__file__).with_name("images_fetch_child.py")


def _cache(root: Path, url: str, **options: object) -> ImageCache:
    opts = FetchOptions(**{"retry": FAST_RETRY, **options})  # type: ignore[arg-type]
    return ImageCache(root, base_url=url, quota=Quota(1 << 30), options=opts)


def _same_tree(tree: Path, expected: Path) -> None:
    files = sorted(p.relative_to(expected) for p in expected.rglob("*") if p.is_file())
    assert files
    for rel in files:
        assert (tree / rel).read_bytes() == (expected / rel).read_bytes()


def test_image_arrives_whole_through_drops_and_stalls(server: ImageServer, publish,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    manifest = publish(seed=1)
    seen: list[Progress] = []
    with FaultProxy(server.port, cut_min=150_000, cut_max=400_000, stall_chance=0.05,
                    stall=0.8) as proxy:
        cache = _cache(tmp_path / "node", proxy.url, parallel=3, read_timeout=0.3)
        tree = asyncio.run(cache.materialize(manifest.id))
        asyncio.run(cache.fetch(manifest.id, progress=seen.append))
    assert proxy.cuts >= 2 and proxy.stalls >= 1
    _same_tree(tree, make_tree(tmp_path / "expected", seed=1))
    assert seen[-1].done == seen[-1].total and str(seen[-1]).endswith("100%")


def test_progress_rises_to_the_whole(server: ImageServer, publish, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = publish(seed=2)
    seen: list[Progress] = []
    asyncio.run(_cache(tmp_path / "node", server.url).fetch(manifest.id, progress=seen.append))
    done = [p.done for p in seen]
    assert done == sorted(done) and done[0] == 0
    assert done[-1] == seen[-1].total == sum(manifest.unique_hashes().values())
    assert len(seen) == len(manifest.unique_hashes()) + 1


def _run_child(root: Path, url: str, image: str, *, kill_after: int | None) -> bool:
    """Run the fetching child; SIGKILL it after ``kill_after`` new chunks. True if it ended."""
    child = subprocess.Popen([sys.executable, str(CHILD), str(root), url, image, "3000000",
                              str(BATCH)],
                             stdout=subprocess.PIPE, text=True)
    try:
        lines = 0
        for line in child.stdout:  # type: ignore[union-attr]
            if line.startswith("progress"):
                lines += 1
            if kill_after is not None and lines > kill_after + 1:
                child.send_signal(signal.SIGKILL)
                child.wait()
                return False
        return child.wait(timeout=60) == 0
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()


BATCH = 3  # chunks per batch request in the killed child


def test_killed_fetch_resumes_and_resends_at_most_one_batch_per_kill(
        server: ImageServer, publish, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest: Manifest = publish(seed=3, files=30)
    root = tmp_path / "node"
    rng = random.Random(3)
    kills = 0
    for _ in range(4):
        if _run_child(root, server.url, manifest.id, kill_after=rng.randint(2, 8)):
            break
        kills += 1
    assert kills >= 2
    assert _run_child(root, server.url, manifest.id, kill_after=None)
    resent = sum(n - 1 for n in server.hits.values() if n > 1)
    assert resent <= kills * BATCH  # what was in flight; nothing received is asked again
    assert set(server.hits) == set(manifest.unique_hashes())
    cache = _cache(root, server.url)
    assert cache.missing(manifest) == {}


def _fetch_in_thread(cache: ImageCache, image: str,
                     seen: list[Progress]) -> tuple[threading.Thread, list[BaseException]]:
    errors: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(cache.fetch(image, progress=seen.append))
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, errors


def _wait_until(check: Callable[[], bool], timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_server_restart_mid_download(server: ImageServer, publish, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = publish(seed=4)
    cache = _cache(tmp_path / "node", server.url, parallel=2, rate=2_000_000, read_timeout=1.0)
    seen: list[Progress] = []
    thread, errors = _fetch_in_thread(cache, manifest.id, seen)
    _wait_until(lambda: bool(seen) and seen[-1].fraction > 0.3)
    server.stop()
    time.sleep(0.5)
    assert thread.is_alive()
    server.start()
    thread.join(timeout=60)
    assert not errors and not thread.is_alive()
    assert seen[-1].fraction == 1.0
    assert cache.missing(manifest) == {}


def test_corrupt_chunk_on_disk_is_refetched_and_never_used(
        server: ImageServer, publish, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = publish(seed=5)
    cache = _cache(tmp_path / "node", server.url)
    asyncio.run(cache.fetch(manifest.id))
    victim = manifest.chunks[len(manifest.chunks) // 2].hash
    corrupt_chunk(cache.store, victim)
    tree = asyncio.run(cache.materialize(manifest.id))
    assert server.hits[victim] == 2
    _same_tree(tree, make_tree(tmp_path / "expected", seed=5))


def test_bandwidth_cap_holds(server: ImageServer, publish, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    manifest = publish(seed=6, files=8)
    rate = 1_500_000
    cache = _cache(tmp_path / "node", server.url, rate=rate, burst=64 * 1024)
    started = time.monotonic()
    asyncio.run(cache.fetch(manifest.id))
    elapsed = time.monotonic() - started
    wire = sum(cache.store.stored_size(h) for h in manifest.unique_hashes())
    assert elapsed >= (wire - 64 * 1024) / rate * 0.9
    assert elapsed < wire / rate * 3 + 5


@pytest.fixture
def three_images(publish) -> Iterator[list[Manifest]]:  # type: ignore[no-untyped-def]
    yield [publish(seed=10 + i, name=f"img{i}", files=6, size=170_000) for i in range(3)]


def test_gc_evicts_least_recently_used_unpinned_first(
        server: ImageServer, three_images: list[Manifest], tmp_path: Path) -> None:
    a, b, c = three_images
    clock = iter(range(1000))
    cache = ImageCache(tmp_path / "node", base_url=server.url, options=FetchOptions(),
                       quota=Quota(1 << 30), clock=lambda: float(next(clock)))
    asyncio.run(cache.fetch(a.id))
    usage_a = cache.usage()
    asyncio.run(cache.fetch(b.id))
    asyncio.run(cache.fetch(a.id))  # a is now more recent than b
    need_c = sum(n for h, n in c.unique_hashes().items() if not cache.store.has(h))
    # Room for a and c, not for all three: b, the least recently used, must go.
    cache.quota = Quota(int((usage_a + need_c + 4096) / 0.8), high=0.8, low=0.8)
    asyncio.run(cache.fetch(c.id))
    assert [i.id for i in cache.images()] == [a.id, c.id]
    assert cache.missing(a) == {} and cache.missing(c) == {}
    assert not any(cache.store.has(h) for h in set(b.unique_hashes()) - set(a.unique_hashes()))
    assert not cache.store.has_manifest(b.id)


def test_gc_never_evicts_pinned_images_and_says_so(
        server: ImageServer, three_images: list[Manifest], tmp_path: Path) -> None:
    a, b, c = three_images
    cache = _cache(tmp_path / "node", server.url)
    for image in (a, b):
        asyncio.run(cache.fetch(image.id))
    cache.quota = Quota(int(cache.usage() * 1.3))
    with pytest.raises(CacheFull, match="held by images"):
        asyncio.run(cache.fetch(c.id, pins=[a.id, b.id]))
    assert cache.missing(a) == {} and cache.missing(b) == {}


def test_fetch_queue_takes_soonest_lease_first(server: ImageServer, three_images: list[Manifest],
                                               tmp_path: Path) -> None:
    from slicelab.images.cache import FetchQueue

    cache = _cache(tmp_path / "node", server.url)
    queue = FetchQueue(cache)
    a, b, c = three_images
    queue.submit(a.id, need_at=300)
    queue.submit(b.id, need_at=200)
    queue.submit(c.id, need_at=100)
    queue.submit(a.id, need_at=50)
    assert asyncio.run(queue.run()) == [a.id, c.id, b.id]
    assert all(cache.missing(m) == {} for m in three_images)




def test_new_version_fetches_only_new_chunks_and_a_manifest_delta(
        server: ImageServer, publish, tmp_path: Path,  # type: ignore[no-untyped-def]
        monkeypatch: pytest.MonkeyPatch) -> None:
    import slicelab.images.fetch as fetch_module

    old = publish(seed=30)
    tree = tmp_path / "tree-rootfs-1-30"
    victim = sorted(tree.rglob("f*"))[5]
    victim.write_bytes(victim.read_bytes()[:1000] + b"patched" + victim.read_bytes()[1000:])
    new = publish(seed=30, version="2", reuse=tree)
    decoded: list[str] = []
    real = fetch_module.decode_delta
    monkeypatch.setattr(fetch_module, "decode_delta",
                        lambda blob, base: decoded.append("x") or real(blob, base))
    cache = _cache(tmp_path / "node", server.url)
    asyncio.run(cache.fetch(old.id))
    server.hits.clear()
    asyncio.run(cache.fetch(new.id))
    assert decoded == ["x"]
    assert set(server.hits) == set(new.unique_hashes()) - set(old.unique_hashes())
    assert 1 <= len(server.hits) <= 3


def test_scattered_edits_travel_as_deltas_of_their_size(server: ImageServer,
                                                         tmp_path: Path) -> None:
    from slicelab.images.store import ChunkStore
    from slicelab.images.upload import add_file, push_image

    rng = random.Random(40)
    old = rng.randbytes(4 << 20)
    new = bytearray(old)
    for start in range(50_000, len(old) - 20_000, 260_000):  # 16 edits of 2 KB
        new[start:start + 2000] = rng.randbytes(2000)
    source = ChunkStore(tmp_path / "publisher", durable=False)
    manifests = []
    for version, data in (("1", old), ("2", bytes(new))):
        (tmp_path / version).write_bytes(data)
        manifests.append(add_file(source, tmp_path / version, name="big", version=version))
        with httpx.Client(base_url=server.url) as client:
            push_image(source, manifests[-1], client=client)
    first, second = manifests
    with FaultProxy(server.port, cut_min=1 << 40, cut_max=1 << 40) as proxy:
        cache = _cache(tmp_path / "node", proxy.url)
        asyncio.run(cache.fetch(first.id))
        before = proxy.bytes_down
        asyncio.run(cache.fetch(second.id))
        update = proxy.bytes_down - before
    changed = sum(1 for a, b in zip(old, new, strict=True) if a != b)
    plain = sum(n for h, n in second.unique_hashes().items() if h not in first.unique_hashes())
    assert update < changed * 1.3 + 20_000 < plain / 3
    assert cache.missing(second) == {}
    assert b"".join(cache.store.read_stream(second)) == bytes(new)
