from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from images_harness import ImageServer, make_tree

from slicelab.images.manifest import Manifest
from slicelab.images.store import ChunkStore
from slicelab.images.upload import add_directory, push_image


@pytest.fixture
def server(tmp_path: Path) -> Iterator[ImageServer]:
    srv = ImageServer(tmp_path / "server")
    srv.start()
    yield srv
    srv.stop()


@pytest.fixture
def publish(server: ImageServer, tmp_path: Path):  # type: ignore[no-untyped-def]
    """Publish a generated tree as image ``name``/``version``; returns its manifest."""
    source = ChunkStore(tmp_path / "publisher", durable=False)

    def _publish(*, seed: int, version: str = "1", name: str = "rootfs", files: int = 24,
                 size: int = 200_000, reuse: Path | None = None) -> Manifest:
        tree = reuse or make_tree(tmp_path / f"tree-{name}-{version}-{seed}", seed=seed,
                                  files=files, size=size)
        manifest = add_directory(source, tree, name=name, version=version, work=tmp_path)
        with httpx.Client(base_url=server.url) as client:
            push_image(source, manifest, client=client)
        return manifest

    return _publish
