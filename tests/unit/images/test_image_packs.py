"""Pack files: a batch's chunks in one file, found again after a restart, dropped safely."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import zstandard

from slicelab.domain.errors import NotFound
from slicelab.images.chunker import hash_bytes
from slicelab.images.errors import IntegrityError
from slicelab.images.store import ChunkStore


def _chunks(count: int, *, seed: int = 0) -> list[tuple[str, bytes]]:
    packer = zstandard.ZstdCompressor(level=3)
    out = []
    for i in range(count):
        data = os.urandom(5000 + i) + bytes([seed])
        out.append((hash_bytes(data), packer.compress(data)))
    return out


def test_packed_chunks_are_found_again_after_a_restart(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    chunks = _chunks(5)
    store.put_pack(chunks)
    assert len(list((tmp_path / "packs").glob("*.pack"))) == 1
    again = ChunkStore(tmp_path)
    for digest, blob in chunks:
        assert again.has(digest)
        assert again.get_compressed(digest) == blob
        assert again.stored_size(digest) == len(blob)
    assert sorted(again.hashes()) == sorted(d for d, _ in chunks)
    assert again.usage() >= sum(len(b) for _, b in chunks)


def test_another_store_on_the_same_root_sees_new_packs(tmp_path: Path) -> None:
    reader, writer = ChunkStore(tmp_path), ChunkStore(tmp_path)
    chunks = _chunks(2)
    writer.put_pack(chunks)
    assert reader.has(chunks[0][0])


def test_a_cut_pack_keeps_its_whole_frames(tmp_path: Path) -> None:
    chunks = _chunks(4)
    ChunkStore(tmp_path).put_pack(chunks)
    pack = next((tmp_path / "packs").glob("*.pack"))
    pack.write_bytes(pack.read_bytes()[:-10])  # the last frame cut short
    store = ChunkStore(tmp_path)
    assert [store.has(d) for d, _ in chunks] == [True, True, True, False]


def test_dropping_a_packed_chunk_keeps_the_others(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    chunks = _chunks(3)
    store.put_pack(chunks)
    store.delete(chunks[1][0])
    assert not list((tmp_path / "packs").glob("*.pack"))
    again = ChunkStore(tmp_path)
    assert not again.has(chunks[1][0])
    with pytest.raises(NotFound):
        again.get_compressed(chunks[1][0])
    for digest, blob in (chunks[0], chunks[2]):
        assert again.get_compressed(digest) == blob
    again.delete_many(d for d, _ in chunks)
    assert list(again.hashes()) == []


def test_a_damaged_packed_chunk_fails_its_check_and_is_dropped(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    chunks = _chunks(3)
    store.put_pack(chunks)
    place = store.packs.places[chunks[0][0]]
    with open(tmp_path / "packs" / place.pack, "r+b") as pack:
        pack.seek(place.offset + place.length - 3)
        pack.write(b"bad")
    with pytest.raises(IntegrityError):
        store.get(chunks[0][0])
    assert not store.has(chunks[0][0])
    assert store.verify(chunks[2][0])
