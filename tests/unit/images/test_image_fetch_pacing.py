"""A capped fetch paces its requests; a spool keeps what a killed fetch received."""

from __future__ import annotations

import asyncio
import io
import json
import random
import time
from pathlib import Path

import httpx
import zstandard

from slicelab.agent.images import SigningTransport
from slicelab.images.chunker import ChunkParams
from slicelab.images.fetch import ChunkSink, Fetcher, FetchOptions, RetryPolicy, Spool, TokenBucket
from slicelab.images.frames import BATCH_TYPE, FrameKind, pack_frame
from slicelab.images.manifest import Manifest, build_manifest
from slicelab.images.store import ChunkStore

SMALL = ChunkParams(min_size=256, avg_size=1024, max_size=4096)


def _image(size: int, seed: int) -> tuple[Manifest, dict[str, bytes]]:
    pieces: dict[str, bytes] = {}
    data = random.Random(seed).randbytes(size)
    manifest = build_manifest(
        io.BytesIO(data),
        name="paced",
        version="1",
        params=SMALL,
        sink=lambda p: pieces.__setitem__(p.hash, p.data),
    )
    return manifest, pieces


def _frame(digest: str, data: bytes) -> bytes:
    return pack_frame(FrameKind.PLAIN, digest, zstandard.compress(data))


def test_a_capped_fetch_asks_one_batch_at_a_time_when_the_cap_allows(tmp_path: Path) -> None:
    manifest, pieces = _image(300_000, seed=1)
    asked: list[tuple[float, int]] = []
    in_flight = [0, 0]  # now, most

    async def handler(request: httpx.Request) -> httpx.Response:
        hashes = json.loads(request.content)["hashes"]
        asked.append((time.monotonic(), sum(len(pieces[h]) for h in hashes)))
        in_flight[0] += 1
        in_flight[1] = max(in_flight)
        await asyncio.sleep(0.02)
        in_flight[0] -= 1
        body = b"".join(_frame(h, pieces[h]) for h in hashes)
        return httpx.Response(
            200, headers={"Content-Type": BATCH_TYPE}, stream=httpx.ByteStream(body)
        )

    rate, burst = 600_000, 20_000
    options = FetchOptions(
        parallel=4,
        rate=rate,
        burst=burst,
        batch_chunks=40,
        retry=RetryPolicy(attempts=2, base_delay=0.0),
    )
    fetcher = Fetcher(
        ChunkStore(tmp_path / "node", durable=False),
        "http://server/",
        options=options,
        transport=httpx.MockTransport(handler),
    )
    started = time.monotonic()
    asyncio.run(fetcher.chunks(manifest, dict(manifest.unique_hashes())))
    assert in_flight[1] == 1 and len(asked) >= 5
    before = 0
    for at, size in asked:  # each request only once the cap allowed its bytes
        assert at - started >= (before + size - burst) / rate * 0.9
        before += size
    assert all(fetcher.store.has(h) for h in manifest.unique_hashes())


def test_a_spool_left_by_a_killed_fetch_is_stored_at_the_next_start(tmp_path: Path) -> None:
    manifest, pieces = _image(20_000, seed=2)
    hashes = list(manifest.unique_hashes())
    whole = b"".join(_frame(h, pieces[h]) for h in hashes[:3])
    cut = _frame(hashes[3], pieces[hashes[3]])[:-10]  # the kill came mid-frame
    spool_dir = tmp_path / "spool"
    spool_dir.mkdir()
    (spool_dir / "deadfetcher.0001.frames").write_bytes(whole + cut)
    sink = ChunkSink(ChunkStore(tmp_path / "node", durable=False))
    assert Spool(spool_dir).recover(sink) == 3
    assert [sink.store.has(h) for h in hashes[:4]] == [True, True, True, False]
    assert sink.verified == set(hashes[:3])
    assert not list(spool_dir.iterdir())


def test_a_spooled_fetch_stores_every_chunk_and_leaves_no_spool(tmp_path: Path) -> None:
    manifest, pieces = _image(50_000, seed=3)

    def handler(request: httpx.Request) -> httpx.Response:
        hashes = json.loads(request.content)["hashes"]
        body = b"".join(_frame(h, pieces[h]) for h in hashes)
        return httpx.Response(
            200, headers={"Content-Type": BATCH_TYPE}, stream=httpx.ByteStream(body)
        )

    fetcher = Fetcher(
        ChunkStore(tmp_path / "node", durable=False),
        "http://server/",
        options=FetchOptions(parallel=2, batch_chunks=7),
        transport=httpx.MockTransport(handler),
        spool=tmp_path / "spool",
    )
    asyncio.run(fetcher.chunks(manifest, dict(manifest.unique_hashes())))
    assert all(fetcher.store.verify(h) for h in manifest.unique_hashes())
    assert not list((tmp_path / "spool").iterdir())


def test_token_bucket_takes_a_request_at_once_and_settles_the_difference() -> None:
    now = [0.0]
    bucket = TokenBucket(rate=1000, burst=100, clock=lambda: now[0])
    slept: list[float] = []

    async def run() -> None:
        real_sleep = asyncio.sleep

        async def fake_sleep(seconds: float) -> None:
            slept.append(seconds)
            now[0] += seconds
            await real_sleep(0)

        asyncio.sleep = fake_sleep  # type: ignore[assignment]
        try:
            await bucket.take(600)  # 500 over the burst: one wait of half a second
            bucket.settle(600, 100)  # only 100 came: 500 back
            await bucket.take(100)  # no wait
        finally:
            asyncio.sleep = real_sleep  # type: ignore[assignment]

    asyncio.run(run())
    assert slept == [0.5]


def test_closing_one_client_keeps_the_signing_transports_pool() -> None:
    closed: list[int] = []

    class Inner(httpx.AsyncBaseTransport):
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            return httpx.Response(200)

        async def aclose(self) -> None:
            closed.append(1)

    signing = SigningTransport(lambda: None, inner=Inner())

    async def run() -> None:
        for _ in range(2):
            async with httpx.AsyncClient(transport=signing):
                pass
        assert closed == []
        await signing.shutdown()

    asyncio.run(run())
    assert closed == [1]
