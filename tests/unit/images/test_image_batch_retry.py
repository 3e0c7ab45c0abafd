"""A batch whose every chunk arrived before its connection broke is not asked for again."""

from __future__ import annotations

import asyncio
import io
import json
import random
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import zstandard

from slicelab.images.chunker import ChunkParams
from slicelab.images.fetch import Fetcher, FetchOptions, RetryPolicy
from slicelab.images.frames import BATCH_TYPE, FrameKind, pack_frame
from slicelab.images.manifest import build_manifest
from slicelab.images.store import ChunkStore

SMALL = ChunkParams(min_size=256, avg_size=1024, max_size=4096)


class _CutAfter(httpx.AsyncByteStream):
    """The whole body, then a broken connection."""

    def __init__(self, body: bytes) -> None:
        self._body = body

    async def __aiter__(self) -> AsyncIterator[bytes]:
        yield self._body
        raise httpx.ReadError("connection reset after the last frame")


def test_a_batch_cut_after_its_last_frame_completes_without_an_empty_request(
        tmp_path: Path) -> None:
    pieces: dict[str, bytes] = {}
    data = random.Random(5).randbytes(20_000)
    manifest = build_manifest(io.BytesIO(data), name="cut", version="1", params=SMALL,
                              sink=lambda p: pieces.__setitem__(p.hash, p.data))
    asked: list[list[str]] = []

    def handler(request: httpx.Request) -> httpx.Response:
        hashes = json.loads(request.content)["hashes"]
        asked.append(hashes)
        if not hashes:
            return httpx.Response(422, json={"detail": "no hashes"})
        body = b"".join(pack_frame(FrameKind.PLAIN, h, zstandard.compress(pieces[h]))
                        for h in hashes)
        return httpx.Response(200, headers={"Content-Type": BATCH_TYPE}, stream=_CutAfter(body))

    store = ChunkStore(tmp_path / "node", durable=False)
    options = FetchOptions(parallel=1, retry=RetryPolicy(attempts=3, base_delay=0.0))
    fetcher = Fetcher(store, "http://server/", options=options,
                      transport=httpx.MockTransport(handler))
    asyncio.run(fetcher.chunks(manifest, dict(manifest.unique_hashes())))
    assert all(store.verify(h) for h in manifest.unique_hashes())
    assert asked == [list(manifest.unique_hashes())]
