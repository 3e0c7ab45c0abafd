"""The aggregate's image collection (sweep), upload expiry and the agent's cache quota."""

from __future__ import annotations

import io
import os
import random
from datetime import UTC, datetime
from pathlib import Path
from types import SimpleNamespace

import pytest

from slicelab.agent.config import AgentConfig
from slicelab.agent.images import CACHE_MIB_ENV, cache_quota
from slicelab.domain.errors import InvalidInput
from slicelab.images.chunker import ChunkParams
from slicelab.images.manifest import build_manifest
from slicelab.services.images import ImageService
from slicelab.services.sweep import SweepPolicy, collect_images

SMALL = ChunkParams(min_size=256, avg_size=1024, max_size=4096)
NOW = datetime(2030, 1, 1, tzinfo=UTC)


def _uow(*images: str) -> SimpleNamespace:
    rows = [SimpleNamespace(plan={"image": name}) for name in images]
    slivers = SimpleNamespace(live=lambda now: rows)
    return SimpleNamespace(aggregate=SimpleNamespace(slivers=slivers))


def _tree(root: Path, seed: int) -> Path:
    root.mkdir()
    (root / "data").write_bytes(random.Random(seed).randbytes(20_000))
    return root


def test_the_sweep_deletes_deprecated_images_once_unused(tmp_path: Path) -> None:
    service = ImageService(tmp_path / "store")
    info = service.register_tree("old", _tree(tmp_path / "t1", 1))
    service.register_tree("keep", _tree(tmp_path / "t2", 2))
    service.store.catalog.set_deprecated("old", info.version, deprecated=True)
    assert collect_images(_uow("old"), service, now=NOW) == 0
    assert [i.name for i in service.entries()] == ["keep", "old"]
    assert collect_images(_uow("keep"), service, now=NOW) > 0
    assert [i.name for i in service.entries()] == ["keep"]
    assert not service.store.chunks.has_manifest(info.manifest)


def test_an_upload_that_never_completes_expires(tmp_path: Path) -> None:
    clock = [1000.0]
    service = ImageService(tmp_path / "store", clock=lambda: clock[0])
    data = random.Random(3).randbytes(30_000)
    pieces: dict[str, bytes] = {}
    manifest = build_manifest(io.BytesIO(data), name="half", version="1", params=SMALL,
                              sink=lambda p: pieces.__setitem__(p.hash, p.data))
    status = service.begin_upload(manifest.to_json())
    first = status.missing[0]
    service.store.put_chunk(first, pieces[first])
    path = service.root / "uploads" / f"{manifest.id}.json"
    os.utime(path, (900.0, 900.0))
    clock[0] = 900.0 + 3600
    assert collect_images(_uow(), service, now=NOW) == 0  # within the day: kept
    assert service.store.pending_uploads() == [manifest.id]
    clock[0] = 900.0 + 2 * 86400
    assert collect_images(_uow(), service, now=NOW, policy=SweepPolicy()) == 1
    assert service.store.pending_uploads() == []
    assert not service.store.chunks.has(first)


def test_cache_quota_from_config_with_env_override(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    config = AgentConfig(server="http://am:8470", state_dir=tmp_path, image_cache_mib=64)
    monkeypatch.delenv(CACHE_MIB_ENV, raising=False)
    assert cache_quota(config).limit == 64 << 20
    monkeypatch.setenv(CACHE_MIB_ENV, "8")
    assert cache_quota(config).limit == 8 << 20
    monkeypatch.delenv(CACHE_MIB_ENV)
    unset = AgentConfig(server="http://am:8470", state_dir=tmp_path)
    assert cache_quota(unset).limit > 1 << 20
    with pytest.raises(InvalidInput, match="image_cache_mib"):
        AgentConfig(server="http://am:8470", state_dir=tmp_path, image_cache_mib=0)
