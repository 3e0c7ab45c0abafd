from __future__ import annotations

import io
import json
import random

import blake3
import pytest

from slicelab.domain.errors import InvalidInput
from slicelab.images.chunker import ChunkParams
from slicelab.images.manifest import ChunkRef, Manifest, build_manifest

SMALL = ChunkParams(min_size=256, avg_size=1024, max_size=4096)


def _manifest(data: bytes, **kw: str) -> Manifest:
    names = {"name": "debian", "version": "12.4", **kw}
    return build_manifest(io.BytesIO(data), params=SMALL, **names)


def test_round_trip_is_exact_and_canonical() -> None:
    data = random.Random(1).randbytes(50_000)
    manifest = _manifest(data)
    raw = manifest.to_json()
    assert Manifest.from_json(raw, expect_id=manifest.id) == manifest
    assert raw == json.dumps(json.loads(raw), sort_keys=True, separators=(",", ":")).encode()
    assert manifest.id == blake3.blake3(raw).hexdigest()
    assert manifest.hash == blake3.blake3(data).hexdigest()
    assert manifest.size == len(data) == sum(c.length for c in manifest.chunks)


def test_sink_sees_every_piece_in_order() -> None:
    data = random.Random(2).randbytes(20_000)
    seen: list[bytes] = []
    manifest = build_manifest(io.BytesIO(data), name="a", version="1", params=SMALL,
                              sink=lambda p: seen.append(p.data))
    assert b"".join(seen) == data
    assert len(seen) == len(manifest.chunks)


def test_id_depends_on_name_version_and_content() -> None:
    data = random.Random(3).randbytes(10_000)
    ids = {_manifest(data).id, _manifest(data, version="12.5").id,
           _manifest(data + b"x").id, _manifest(data, name="ubuntu").id}
    assert len(ids) == 4
    assert _manifest(data).id == _manifest(data).id


def test_wrong_id_or_non_canonical_bytes_are_refused() -> None:
    manifest = _manifest(b"hello world" * 100)
    with pytest.raises(InvalidInput):
        Manifest.from_json(manifest.to_json(), expect_id="0" * 64)
    pretty = json.dumps(manifest.to_dict(), indent=2).encode()
    with pytest.raises(InvalidInput):
        Manifest.from_json(pretty, expect_id=blake3.blake3(pretty).hexdigest())


@pytest.mark.parametrize("mutate", [
    lambda d: d.update(size=d["size"] + 1),
    lambda d: d["chunks"][0].__setitem__(1, 5),
    lambda d: d["chunks"][0].__setitem__(0, "nothex"),
    lambda d: d.update(name="Bad Name"),
    lambda d: d.update(format="other/9"),
    lambda d: d.pop("hash"),
])
def test_malformed_manifests_are_refused(mutate) -> None:  # type: ignore[no-untyped-def]
    doc = _manifest(random.Random(4).randbytes(5000)).to_dict()
    mutate(doc)
    with pytest.raises(InvalidInput):
        Manifest.from_json(json.dumps(doc).encode())


def test_chunks_must_be_contiguous() -> None:
    with pytest.raises(InvalidInput):
        Manifest(name="a", version="1", size=20, hash="a" * 64,
                 chunks=(ChunkRef("b" * 64, 0, 10), ChunkRef("c" * 64, 11, 9)))


def test_empty_image_is_valid() -> None:
    manifest = _manifest(b"")
    assert manifest.size == 0 and manifest.chunks == ()
    assert Manifest.from_json(manifest.to_json(), expect_id=manifest.id) == manifest
