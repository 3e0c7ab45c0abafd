"""The server's sweeper collects the image store: a deprecated, unused image goes by itself."""

from __future__ import annotations

import random
import time
from pathlib import Path

from fastapi.testclient import TestClient

from slicelab.api.app import create_app
from slicelab.services.images import ImageService
from slicelab.settings import Settings
from slicelab.store.uow import UnitOfWorkFactory


def _tree(root: Path, seed: int) -> Path:
    root.mkdir()
    (root / "data").write_bytes(random.Random(seed).randbytes(50_000))
    return root


def _wait(check: object, *, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if callable(check) and check():
            return True
        time.sleep(0.05)
    return False


def test_the_running_sweeper_collects_a_deprecated_unused_image(
        uow_factory: UnitOfWorkFactory, tmp_path: Path) -> None:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'data' / 'slicelab.db'}",
                        authority="test.slicelab", run_migrations=False, sweep_interval=0.05)
    (tmp_path / "data").mkdir()
    app = create_app(settings, uow_factory=uow_factory)
    with TestClient(app):
        service: ImageService = app.state.image_service
        assert service.root.is_relative_to(tmp_path)
        old = service.register_tree("old", _tree(tmp_path / "t1", 1))
        kept = service.register_tree("kept", _tree(tmp_path / "t2", 2))
        chunks = service.store.chunks
        old_chunks = set(chunks.get_manifest(old.manifest).unique_hashes())
        kept_chunks = set(chunks.get_manifest(kept.manifest).unique_hashes())
        assert old_chunks and not old_chunks & kept_chunks
        time.sleep(0.3)  # several sweeps: nothing current is touched
        assert all(chunks.has(h) for h in old_chunks | kept_chunks)
        service.store.catalog.set_deprecated("old", old.version, deprecated=True)
        assert _wait(lambda: not any(chunks.has(h) for h in old_chunks), timeout=10)
        assert not chunks.has_manifest(old.manifest)
        assert [i.name for i in service.entries()] == ["kept"]
        assert all(chunks.has(h) for h in kept_chunks)
