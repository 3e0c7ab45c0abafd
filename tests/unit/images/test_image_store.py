from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from slicelab.domain.errors import Conflict, InvalidInput, NotFound
from slicelab.images.chunker import ChunkParams, hash_bytes
from slicelab.images.errors import IntegrityError
from slicelab.images.manifest import Manifest, build_manifest
from slicelab.images.store import ChunkStore, ImageStore, atomic_write

SMALL = ChunkParams(min_size=1024, avg_size=4096, max_size=16384)


def _image(seed: int, size: int = 100_000, **names: str) -> tuple[Manifest, dict[str, bytes]]:
    pieces: dict[str, bytes] = {}
    data = random.Random(seed).randbytes(size)
    manifest = build_manifest(io.BytesIO(data), name=names.get("name", "img"),
                              version=names.get("version", "1"), params=SMALL,
                              sink=lambda p: pieces.__setitem__(p.hash, p.data))
    return manifest, pieces


def test_put_get_and_dedup(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = b"x" * 50_000
    digest = hash_bytes(data)
    size = store.put(digest, data)
    assert size < len(data)  # compressed
    assert store.put(digest, data) == size
    assert store.get(digest) == data
    assert list(store.hashes()) == [digest]
    assert store.chunk_path(digest).parent.name == digest[:2]


def test_put_refuses_bytes_that_do_not_match(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    with pytest.raises(IntegrityError):
        store.put(hash_bytes(b"a"), b"b")
    assert list(store.hashes()) == []


def test_corrupt_chunk_is_detected_and_dropped(tmp_path: Path) -> None:
    store = ChunkStore(tmp_path)
    data = os.urandom(30_000)
    digest = hash_bytes(data)
    store.put(digest, data)
    path = store.chunk_path(digest)
    blob = bytearray(path.read_bytes())
    blob[len(blob) // 2] ^= 0xFF
    path.write_bytes(bytes(blob))
    with pytest.raises(IntegrityError):
        store.get(digest)
    assert not store.has(digest)
    with pytest.raises(NotFound):
        store.get(digest)


def test_atomic_write_keeps_old_content_when_interrupted(tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "file"
    target.write_bytes(b"old")

    def crash(*_: object) -> None:
        raise OSError("power cut")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError):
        atomic_write(target, b"new", tmp_dir=tmp_path)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_leftover_temporaries_are_swept_on_open(tmp_path: Path) -> None:
    ChunkStore(tmp_path)
    (tmp_path / "tmp" / "half.tmp").write_bytes(b"partial")
    ChunkStore(tmp_path)
    assert list((tmp_path / "tmp").iterdir()) == []


def test_upload_in_any_order_survives_restart_and_completes(tmp_path: Path) -> None:
    manifest, pieces = _image(1)
    store = ImageStore(tmp_path)
    status = store.begin_upload(manifest.to_json())
    assert set(status.missing) == set(pieces)
    order = list(pieces)
    random.Random(2).shuffle(order)
    for digest in order[: len(order) // 2]:
        store.put_chunk(digest, pieces[digest])
    store = ImageStore(tmp_path)  # the server restarts mid-upload
    assert set(store.upload_status(manifest.id).missing) == set(order[len(order) // 2:])
    for digest in order[len(order) // 2:]:
        store.put_chunk(digest, pieces[digest])
    assert store.upload_status(manifest.id).complete
    assert store.catalog.get("img", "1").manifest == manifest.id
    assert b"".join(store.chunks.read_stream(store.chunks.get_manifest(manifest.id))) == \
        b"".join(pieces[c.hash] for c in manifest.chunks)


def test_identical_chunks_are_stored_once_across_images(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    first, pieces = _image(3)
    second, _ = _image(3, version="2")
    store.begin_upload(first.to_json())
    for digest, data in pieces.items():
        store.put_chunk(digest, data)
    assert store.begin_upload(second.to_json()).complete
    assert len(list(store.chunks.hashes())) == len(pieces)
    assert {e.version for e in store.catalog.versions("img")} == {"1", "2"}


def test_catalog_conflicts_and_persistence(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    first, pieces = _image(4)
    other, _ = _image(5)
    store.begin_upload(first.to_json())
    for digest, data in pieces.items():
        store.put_chunk(digest, data)
    with pytest.raises(Conflict):
        store.begin_upload(other.to_json())
    store.catalog.set_deprecated("img", "1", deprecated=True)
    assert ImageStore(tmp_path).catalog.get("img", "1").deprecated


def test_non_canonical_manifest_is_refused(tmp_path: Path) -> None:
    manifest, _ = _image(6)
    with pytest.raises(InvalidInput):
        ImageStore(tmp_path).begin_upload(manifest.to_json() + b" ")


def _upload(store: ImageStore, data: bytes, version: str) -> Manifest:
    pieces: dict[str, bytes] = {}
    manifest = build_manifest(io.BytesIO(data), name="img", version=version, params=SMALL,
                              sink=lambda p: pieces.__setitem__(p.hash, p.data))
    store.begin_upload(manifest.to_json())
    for digest, piece in pieces.items():
        store.put_chunk(digest, piece)
    return manifest


def test_delete_then_collect_garbage_keeps_shared_chunks(tmp_path: Path) -> None:
    store = ImageStore(tmp_path)
    data = random.Random(7).randbytes(200_000)
    one = _upload(store, data, "1")
    two = _upload(store, data[:100_000] + b"changed" + data[100_000:], "2")
    only_one = set(one.unique_hashes()) - set(two.unique_hashes())
    assert only_one
    store.delete_image("img", "1")
    with pytest.raises(NotFound):
        store.catalog.get("img", "1")
    assert store.collect_garbage() == len(only_one)
    assert set(store.chunks.hashes()) == set(two.unique_hashes())
    assert sum(len(b) for b in store.chunks.read_stream(two)) == two.size
