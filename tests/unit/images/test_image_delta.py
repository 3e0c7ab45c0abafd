"""Chunk deltas, the batch wire format and batch planning."""

from __future__ import annotations

import io
import random

import pytest

from slicelab.images.chunker import ChunkParams
from slicelab.images.delta import MAX_BASES, decode_chunk, delta_bases, encode_chunk, first_refs
from slicelab.images.errors import IntegrityError
from slicelab.images.fetch import FetchOptions, plan_batches
from slicelab.images.frames import FrameKind, FrameReader, pack_frame
from slicelab.images.manifest import ChunkRef, Manifest, build_manifest

SMALL = ChunkParams(min_size=256, avg_size=1024, max_size=4096)


def _manifest(data: bytes, version: str = "1") -> Manifest:
    return build_manifest(io.BytesIO(data), name="img", version=version, params=SMALL)


def _pair() -> tuple[bytes, bytes, Manifest, Manifest]:
    rng = random.Random(5)
    old = rng.randbytes(200_000)
    new = bytearray(old)
    for start in range(10_000, 190_000, 40_000):
        new[start : start + 300] = rng.randbytes(300)
    return old, bytes(new), _manifest(old), _manifest(bytes(new), "2")


def test_a_changed_chunk_travels_as_little_more_than_its_edit() -> None:
    old, new, m1, m2 = _pair()
    changed = [r for r in m2.chunks if r.hash not in m1.unique_hashes()]
    assert changed
    sent = 0
    for ref in changed:
        parts = [old[b.offset : b.offset + b.length] for b in delta_bases(ref, m1)]
        data = new[ref.offset : ref.offset + ref.length]
        blob = encode_chunk(data, parts)
        assert decode_chunk(ref.hash, blob, parts) == data
        sent += len(blob)
    assert sent < 5 * 300 * 1.3 + 100 * len(changed)
    assert sent < sum(r.length for r in changed) / 3


def test_a_delta_against_other_bases_fails_its_hash() -> None:
    old, new, m1, m2 = _pair()
    ref = next(r for r in m2.chunks if r.hash not in m1.unique_hashes())
    parts = [old[b.offset : b.offset + b.length] for b in delta_bases(ref, m1)]
    blob = encode_chunk(new[ref.offset : ref.offset + ref.length], parts)
    with pytest.raises(IntegrityError):
        decode_chunk(ref.hash, blob, [bytes(len(p)) for p in parts])
    with pytest.raises(IntegrityError):
        decode_chunk(ref.hash, b"not zstd", parts)


def test_bases_are_the_old_chunks_overlapping_the_range() -> None:
    base = Manifest(
        name="img",
        version="1",
        size=4000,
        hash="0" * 64,
        chunks=tuple(ChunkRef(f"{i:064x}", i * 1000, 1000) for i in range(4)),
    )
    assert [b.offset for b in delta_bases(ChunkRef("a" * 64, 1500, 1000), base)] == [1000, 2000]
    assert [b.offset for b in delta_bases(ChunkRef("a" * 64, 0, 1000), base)] == [0]
    assert delta_bases(ChunkRef("a" * 64, 5000, 10), base) == ()
    assert len(delta_bases(ChunkRef("a" * 64, 0, 4000), base)) == MAX_BASES


def test_first_refs_keep_the_first_place_of_a_repeated_chunk() -> None:
    data = random.Random(1).randbytes(3000) * 20
    manifest = _manifest(data)
    refs = first_refs(manifest)
    for digest, ref in refs.items():
        assert ref == next(r for r in manifest.chunks if r.hash == digest)


def test_frames_parse_whatever_the_pieces() -> None:
    frames = [
        (FrameKind.PLAIN, "ab" * 32, b"x" * 70_000),
        (FrameKind.DELTA, "cd" * 32, b""),
        (FrameKind.PLAIN, "ef" * 32, b"tail"),
    ]
    wire = b"".join(pack_frame(*f) for f in frames)
    rng = random.Random(2)
    reader, seen = FrameReader(), []
    position = 0
    while position < len(wire):
        step = rng.randint(1, 5000)
        seen += reader.feed(wire[position : position + step])
        position += step
    assert [(f.kind, f.hash, f.payload) for f in seen] == frames
    assert reader.pending == 0


def test_a_malformed_frame_is_refused() -> None:
    with pytest.raises(IntegrityError):
        FrameReader().feed(bytes([7]) + bytes(36))
    with pytest.raises(IntegrityError):
        FrameReader().feed(bytes(33) + (1 << 30).to_bytes(4, "big"))


def test_batches_respect_limits_and_split_by_base() -> None:
    _, _, m1, m2 = _pair()
    missing = {h: n for h, n in m2.unique_hashes().items() if h not in m1.unique_hashes()}
    held = set(m1.unique_hashes())
    batches = plan_batches(
        m2, missing, base=m1, has=held.__contains__, max_bytes=5000, max_chunks=2
    )
    assert sorted(h for b in batches for h in b.hashes) == sorted(missing)
    assert all(len(b.hashes) <= 2 for b in batches)
    assert all(b.base == m1 for b in batches)
    none_held = plan_batches(
        m2, missing, base=m1, has=lambda _: False, max_bytes=1 << 20, max_chunks=100
    )
    assert [b.base for b in none_held] == [None]


def test_a_capped_fetch_asks_for_batch_seconds_worth() -> None:
    assert FetchOptions().batch_limit == 4 << 20
    assert FetchOptions(rate=2_000_000).batch_limit == 1_000_000
    assert FetchOptions(rate=4_000_000, batch_seconds=1.0).batch_limit == 4_000_000
    assert FetchOptions(rate=1000).batch_limit == 128 * 1024
