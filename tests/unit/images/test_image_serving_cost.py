"""What keeps serving and fetching chunks cheap: checked files remembered, large reads,
progress reports spaced out."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import httpcore
import pytest

from slicelab.agent import images as agent_images
from slicelab.images import fetch
from slicelab.images.chunker import hash_bytes
from slicelab.images.errors import IntegrityError
from slicelab.images.store import ChunkStore


def _counting(store: ChunkStore, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    decoded: list[str] = []
    real = store._decode

    def counted(digest: str, blob: bytes) -> bytes:
        decoded.append(digest)
        return real(digest, blob)

    monkeypatch.setattr(store, "_decode", counted)
    return decoded


def test_a_served_chunk_is_checked_once_while_its_file_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = ChunkStore(tmp_path)
    data = os.urandom(20_000)
    digest = hash_bytes(data)
    store.put(digest, data)
    served = store.get_compressed(digest)  # checked once here
    decoded = _counting(store, monkeypatch)
    for _ in range(3):
        assert store.get_compressed(digest) == served
    assert decoded == []


def test_a_chunk_file_changed_in_place_is_checked_again(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = os.urandom(20_000)
    digest = hash_bytes(data)
    store.put(digest, data)
    store.get_compressed(digest)  # checked and remembered
    path = store.chunk_path(digest)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    time.sleep(0.01)
    with open(path, "r+b") as out:  # same inode, same size
        out.write(bytes(blob))
    with pytest.raises(IntegrityError):
        store.get_compressed(digest)
    assert not store.has(digest)


def test_a_chunk_file_replaced_is_checked_again(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data, other = os.urandom(20_000), os.urandom(20_000)
    digest = hash_bytes(data)
    store.put(digest, data)
    store.get_compressed(digest)
    store.put(hash_bytes(other), other)
    os.replace(store.chunk_path(hash_bytes(other)), store.chunk_path(digest))
    with pytest.raises(IntegrityError):
        store.get_compressed(digest)


class _Stream(httpcore.AsyncNetworkStream):
    def __init__(self) -> None:
        self.asked: list[int] = []

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        self.asked.append(max_bytes)
        return b""


def test_responses_are_read_in_large_pieces() -> None:
    inner = _Stream()
    stream = fetch._LargeReadStream(inner)
    asyncio.run(stream.read(64 * 1024))
    asyncio.run(stream.read(4 * fetch.READ_BYTES))
    assert inner.asked == [fetch.READ_BYTES, 4 * fetch.READ_BYTES]
    transport = fetch.large_read_transport()
    assert isinstance(transport._pool._network_backend, fetch._LargeReads)


def _report(done: int, **extra: Any) -> dict[str, Any]:
    return {
        "quota": 10,
        "usage": done,
        "images": [],
        "downloads": {"m": {"done": done, "total": 10, "percent": done * 10}},
        "errors": {},
        "bound": {},
        **extra,
    }


def test_progress_alone_is_reported_every_few_seconds() -> None:
    now = time.monotonic()
    worth = agent_images._worth_posting
    assert worth(_report(1), None, now)
    assert not worth(_report(2), _report(1), now)
    assert worth(_report(2), _report(1), now - agent_images.PROGRESS_EVERY)
    assert worth(_report(2, errors={"m": "failed"}), _report(1), now)
    finished = {**_report(2), "downloads": {}}
    assert worth(finished, _report(1), now)
