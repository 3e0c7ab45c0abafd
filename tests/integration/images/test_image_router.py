from __future__ import annotations

import collections
import io
import random
from pathlib import Path

import pytest
import zstandard
from fastapi.testclient import TestClient
from images_harness import make_app

from slicelab.images.chunker import ChunkParams
from slicelab.images.delta import decode_chunk, delta_bases, first_refs
from slicelab.images.frames import BATCH_TYPE, Frame, FrameKind, FrameReader
from slicelab.images.http import IMMUTABLE, ZSTD
from slicelab.images.manifest import BASE_HEADER, Manifest, build_manifest, decode_delta
from slicelab.images.store import ImageStore

SMALL = ChunkParams(min_size=1024, avg_size=4096, max_size=16384)


@pytest.fixture
def client(tmp_path: Path) -> TestClient:
    app = make_app(ImageStore(tmp_path), collections.Counter())
    return TestClient(app, base_url="http://testserver/api/v1/")


def _image(seed: int, version: str = "1") -> tuple[Manifest, dict[str, bytes]]:
    pieces: dict[str, bytes] = {}
    data = random.Random(seed).randbytes(60_000) + b"a" * 40_000
    manifest = build_manifest(io.BytesIO(data), name="rootfs", version=version, params=SMALL,
                              sink=lambda p: pieces.__setitem__(p.hash, p.data))
    return manifest, pieces


def _upload(client: TestClient, manifest: Manifest, pieces: dict[str, bytes]) -> None:
    begun = client.post("uploads", content=manifest.to_json())
    assert begun.status_code == 201
    assert set(begun.json()["missing"]) <= set(pieces)
    for i, digest in enumerate(begun.json()["missing"]):
        if i % 2:
            blob = zstandard.ZstdCompressor().compress(pieces[digest])
            sent = client.put(f"chunks/{digest}", content=blob, headers={"Content-Type": ZSTD})
        else:
            sent = client.put(f"chunks/{digest}", content=pieces[digest])
        assert sent.status_code == 201


def test_upload_then_serve_with_caching_headers(client: TestClient) -> None:
    manifest, pieces = _image(1)
    _upload(client, manifest, pieces)
    assert client.get(f"uploads/{manifest.id}").json()["complete"] is True
    got = client.get(f"manifests/{manifest.id}", headers={"Accept-Encoding": "identity"})
    assert got.content == manifest.to_json()
    assert got.headers["cache-control"] == IMMUTABLE
    assert got.headers["etag"] == f'"{manifest.id}"'
    again = client.get(f"manifests/{manifest.id}",
                       headers={"If-None-Match": got.headers["etag"],
                                "Accept-Encoding": "identity"})
    assert again.status_code == 304
    digest = manifest.chunks[0].hash
    chunk = client.get(f"chunks/{digest}")
    assert chunk.headers["content-type"] == ZSTD
    assert chunk.headers["etag"] == f'"{digest}"'
    assert zstandard.ZstdDecompressor().decompress(chunk.content) == pieces[digest]


def test_manifest_is_zstd_encoded_when_accepted(client: TestClient) -> None:
    manifest, pieces = _image(2)
    _upload(client, manifest, pieces)
    got = client.get(f"manifests/{manifest.id}", headers={"Accept-Encoding": "zstd"})
    assert got.headers["content-encoding"] == "zstd"
    assert got.content == manifest.to_json()  # decoded by the client


def test_which_chunks_are_missing(client: TestClient) -> None:
    manifest, pieces = _image(3)
    hashes = list(pieces)
    assert client.head(f"chunks/{hashes[0]}").status_code == 404
    assert client.post("chunks/missing", json={"hashes": hashes}).json()["missing"] == hashes
    client.put(f"chunks/{hashes[0]}", content=pieces[hashes[0]])
    assert client.head(f"chunks/{hashes[0]}").status_code == 200
    assert client.post("chunks/missing", json={"hashes": hashes}).json()["missing"] == hashes[1:]


def test_list_show_deprecate_delete(client: TestClient) -> None:
    for seed, version in ((4, "1"), (5, "2")):
        _upload(client, *_image(seed, version))
    assert [i["version"] for i in client.get("images").json()] == ["1", "2"]
    assert len(client.get("images/rootfs").json()) == 2
    shown = client.put("images/rootfs/1/deprecated", json={"deprecated": True}).json()
    assert shown["deprecated"] is True
    assert client.get("images/rootfs/1").json()["deprecated"] is True
    assert client.delete("images/rootfs/1").status_code == 204
    missing = client.get("images/rootfs/1")
    assert missing.status_code == 404
    assert missing.headers["content-type"] == "application/problem+json"


def test_errors(client: TestClient) -> None:
    assert client.get(f"chunks/{'0' * 64}").status_code == 404
    assert client.get("chunks/nothex").status_code == 422
    assert client.put(f"chunks/{'0' * 64}", content=b"not these bytes").status_code == 500
    assert client.post("uploads", content=b"{}").status_code == 422
    assert client.get(f"uploads/{'1' * 64}").status_code == 404
    big = client.put(f"chunks/{'0' * 64}", content=b"x" * (16 * 1024 * 1024 + 1))
    assert big.status_code == 413


def test_manifest_as_delta_against_an_older_one(client: TestClient) -> None:
    old, old_pieces = _image(6, "1")
    data = random.Random(6).randbytes(60_000)
    pieces: dict[str, bytes] = {}
    new = build_manifest(io.BytesIO(data[:30_000] + b"patch" + data[30_000:] + b"a" * 40_000),
                         name="rootfs", version="2", params=SMALL,
                         sink=lambda p: pieces.__setitem__(p.hash, p.data))
    _upload(client, old, old_pieces)
    _upload(client, new, pieces)
    delta = client.get(f"manifests/{new.id}", params={"base": old.id})
    assert delta.headers[BASE_HEADER] == old.id
    assert decode_delta(delta.content, old.to_json()) == new.to_json()
    plain = client.get(f"manifests/{new.id}", headers={"Accept-Encoding": "zstd"})
    assert len(delta.content) < len(zstandard.ZstdCompressor(level=9).compress(plain.content)) / 2
    unknown = client.get(f"manifests/{new.id}", params={"base": "f" * 64},
                         headers={"Accept-Encoding": "identity"})
    assert BASE_HEADER not in unknown.headers
    assert unknown.content == new.to_json()


def _frames(body: bytes) -> list[Frame]:
    reader = FrameReader()
    frames = reader.feed(body)
    assert reader.pending == 0
    return frames


def test_a_batch_streams_stored_frames(client: TestClient) -> None:
    manifest, pieces = _image(7)
    _upload(client, manifest, pieces)
    wanted = list(manifest.unique_hashes())
    response = client.post("chunks/batch", json={"hashes": wanted})
    assert response.status_code == 200
    assert response.headers["content-type"] == BATCH_TYPE
    frames = _frames(response.content)
    assert [f.hash for f in frames] == wanted
    assert all(f.kind is FrameKind.PLAIN for f in frames)
    for frame in frames:
        raw = zstandard.ZstdDecompressor().decompress(frame.payload)
        assert raw == pieces[frame.hash]


def test_a_batch_sends_changed_chunks_as_deltas_against_the_base(client: TestClient) -> None:
    old, old_pieces = _image(8)
    _upload(client, old, old_pieces)
    data = bytearray(b"".join(old_pieces[r.hash] for r in old.chunks))
    data[30_000:30_100] = bytes(100)
    new = build_manifest(io.BytesIO(bytes(data)), name="rootfs", version="2", params=SMALL)
    new_pieces = {r.hash: bytes(data[r.offset:r.offset + r.length]) for r in new.chunks}
    _upload(client, new, new_pieces)
    changed = [h for h in new.unique_hashes() if h not in old.unique_hashes()]
    body = {"hashes": changed, "manifest": new.id, "base": old.id}
    frames = _frames(client.post("chunks/batch", json=body).content)
    assert {f.hash for f in frames} == set(changed)
    deltas = [f for f in frames if f.kind is FrameKind.DELTA]
    assert deltas and sum(len(f.payload) for f in deltas) < 1000
    refs = first_refs(new)
    for frame in deltas:
        parts = [old_pieces[b.hash] for b in delta_bases(refs[frame.hash], old)]
        assert decode_chunk(frame.hash, frame.payload, parts) == new_pieces[frame.hash]


def test_a_batch_naming_an_absent_chunk_is_refused(client: TestClient) -> None:
    assert client.post("chunks/batch", json={"hashes": ["0" * 64]}).status_code == 404
    assert client.post("chunks/batch", json={"hashes": ["xyz"]}).status_code == 422
    assert client.post("chunks/batch", json={"hashes": []}).status_code == 422
