"""Images end to end over HTTP: a member imports, a signed node fetches, slivers get trees.

The full slicelab app runs in uvicorn on 127.0.0.1; the node side is the agent's
:class:`~slicelab.agent.images.SliverImages` with a node key from a real enrollment.
"""

from __future__ import annotations

import io
import shutil
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import uvicorn
from images_harness import corrupt_chunk, free_port, make_tree

from slicelab.agent.channel import Channel
from slicelab.agent.images import ImageFetching, SliverImages
from slicelab.agent.state import NodeIdentity
from slicelab.api.app import create_app
from slicelab.bootstrap import init_admin
from slicelab.images.cache import Quota
from slicelab.images.fetch import FetchOptions, RetryPolicy
from slicelab.sdk import Client
from slicelab.sdk.images import ImageClient
from slicelab.settings import Settings


class Aggregate:
    """The slicelab server in a thread, with an admin token."""

    def __init__(self, root: Path) -> None:
        root.mkdir(parents=True, exist_ok=True)
        db = str(root / "slicelab.db")
        self.token = init_admin(db)
        self.app = create_app(Settings.load(db=db))
        self.url = f"http://127.0.0.1:{free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        self.server = uvicorn.Server(uvicorn.Config(self.app, host="127.0.0.1", port=port,
                                                    log_level="warning"))
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> Aggregate:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)

    def client(self) -> Client:
        return Client(self.url, self.token)

    def enroll(self, name: str) -> NodeIdentity:
        with self.client() as sl:
            if not [s for s in sl.sites() if s.name == "lab"]:
                sl.create_site("lab")
            token = sl.enroll_node("lab", name=name).token
        channel = Channel(self.url)
        try:
            return channel.enroll(token, hostname=name, inventory={})
        finally:
            channel.close()


@pytest.fixture
def aggregate(tmp_path: Path) -> Iterator[Aggregate]:
    with Aggregate(tmp_path / "server") as agg:
        yield agg


def _images(tmp_path: Path, agg: Aggregate, identity: NodeIdentity, *,
            quota: int = 1 << 30) -> SliverImages:
    options = FetchOptions(parallel=3, retry=RetryPolicy(attempts=5, base_delay=0.05))
    return SliverImages(tmp_path / "node", server=agg.url, quota=Quota(quota),
                        identity=lambda: identity, options=options, report_every=0.2)


def _wait_for(images: SliverImages, sliver: dict[str, object], *, timeout: float = 30) -> Path:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return images.ensure_for(sliver)
        except ImageFetching:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def _tarball(path: Path, files: dict[str, bytes]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


def test_changing_one_file_sends_only_its_chunks(aggregate: Aggregate, tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", seed=3, files=40, size=200_000)
    with aggregate.client() as sl:
        images = ImageClient.of(sl, cache=tmp_path / "client-cache")
        first = images.upload("lab-os", tree)
        again = images.upload("lab-os", tree)
        victim = sorted(p for p in tree.rglob("*") if p.is_file())[7]
        victim.write_bytes(victim.read_bytes()[:-5000] + b"changed" * 700)
        second = images.upload("lab-os", tree)
        listed = images.versions("lab-os")
    assert first.sent > 1_000_000 and again.sent == 0 and again.info == first.info
    assert 0 < second.sent < first.sent / 10, (first.sent, second.sent)
    assert [v.version for v in listed] == [first.info.version, second.info.version]
    assert [v.current for v in listed] == [False, True]


def test_a_node_fetches_an_image_and_installs_a_file(aggregate: Aggregate,
                                                     tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", seed=5, files=20, size=100_000)
    tools = _tarball(tmp_path / "tools.tar.gz", {"bin/tool": b"#!/bin/sh\necho hi\n"})
    with aggregate.client() as sl:
        images = ImageClient.of(sl, cache=tmp_path / "client-cache")
        image = images.upload("lab-os", tree).info
        tool = images.upload("tools", tools, kind="file").info
    node = _images(tmp_path, aggregate, aggregate.enroll("host1"))
    sliver = {"sliver_id": "s-1", "image": "lab-os", "image_id": image.manifest,
              "install": [{"url": "tools", "path": "/opt/tools", "manifest": tool.manifest}]}
    try:
        node.plan({"slivers": [sliver]}, now=time.time())
        lower = _wait_for(node, sliver)
        time.sleep(0.5)
        with aggregate.client() as sl:
            cache = ImageClient.of(sl).node_cache("host1")["cache"]
    finally:
        node.close()
    assert (lower / "opt/tools/bin/tool").read_bytes() == b"#!/bin/sh\necho hi\n"
    for path in tree.rglob("*"):
        if path.is_file():
            assert (lower / path.relative_to(tree)).read_bytes() == path.read_bytes()
    assert {i["id"] for i in cache["images"]} >= {image.manifest}
    assert all(i["pinned"] for i in cache["images"])


def test_unsigned_or_writing_nodes_are_refused(aggregate: Aggregate) -> None:
    assert httpx.get(f"{aggregate.url}/agent/v1/store/images").status_code == 401
    assert httpx.get(f"{aggregate.url}/api/v1/images").status_code == 401


def test_a_corrupted_chunk_on_the_node_is_fetched_again(aggregate: Aggregate,
                                                         tmp_path: Path) -> None:
    tree = make_tree(tmp_path / "tree", seed=8, files=10, size=100_000)
    with aggregate.client() as sl:
        image = ImageClient.of(sl, cache=tmp_path / "cc").upload("os2", tree).info
    identity = aggregate.enroll("host2")
    sliver = {"sliver_id": "s-2", "image": "os2", "image_id": image.manifest}
    node = _images(tmp_path, aggregate, identity)
    try:
        node.plan({"slivers": [sliver]}, now=time.time())
        _wait_for(node, sliver)
    finally:
        node.close()
    digest = image_chunk = node.cache.store.get_manifest(image.manifest).chunks[3].hash
    corrupt_chunk(node.cache.store, digest)
    shutil.rmtree(node.cache.tree_path(image.manifest))  # the tree must be unpacked again
    node = _images(tmp_path, aggregate, identity)  # the agent restarted
    try:
        node.plan({"slivers": [sliver]}, now=time.time())
        lower = _wait_for(node, sliver)
    finally:
        node.close()
    assert node.cache.store.verify(image_chunk)
    for source in tree.rglob("*"):
        if source.is_file():
            assert (lower / source.relative_to(tree)).read_bytes() == source.read_bytes()
