"""Images through real agents: imported at the server, fetched by two testbed nodes over
the signed node channel, booted; a changed file travels alone; a killed agent and a
restarted server resume; a small cache collects what no sliver needs and says clearly
when even that is not enough.

The tests share one testbed (``world``) and one slice and run in file order; each puts
the slice's topology in the state it needs, so any one also runs alone."""

from __future__ import annotations

import hashlib
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from image_bed import (
    MARKER,
    bulk_tree,
    cache_report,
    held_chunks,
    kill_agent,
    marked_tree,
    restart_server,
    start_agent,
    wait_for,
)

from slicelab.cli.images import node_cache_rows
from slicelab.domain.errors import Unavailable
from slicelab.images.store import ChunkStore
from slicelab.sdk.images import ImageClient, Uploaded
from slicelab.sdk.nodes import SliceStatus
from slicelab.testbed.demo import World, wait_ready

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

BULK_MIB = 32
BASE = {"n1": ("host1", "marked"), "n2": ("host2", "marked")}


def _topology(nodes: dict[str, tuple[str, str]]) -> dict[str, object]:
    return {"nodes": [{"name": name, "image": image, "cores": 0.25, "memory": 128,
                       "component_id": host} for name, (host, image) in nodes.items()],
            "links": []}


def _apply(world: World, nodes: dict[str, tuple[str, str]], *,
           timeout: float = 60) -> SliceStatus:
    world.member.apply_topology(world.ref, _topology(nodes))
    return _ready(world, timeout=timeout)


def _ready(world: World, *, timeout: float) -> SliceStatus:
    """Wait until every sliver is ready; a busy server (503, "try again") is asked again."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return wait_ready(world.member, world.ref, timeout=max(1.0, deadline -
                                                                    time.monotonic()))
        except Unavailable as exc:
            if "try again" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.5)


def _sh(world: World, node: str, script: str) -> str:
    result = world.member.exec(world.ref, node, ["sh", "-c", script], timeout=30)
    assert result.exit_code == 0, f"{node}: {script}: {result.stderr or result.stdout}"
    return result.stdout


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="module")
def images(world: World) -> ImageClient:
    return ImageClient.of(world.admin, cache=world.base_dir / "sdk-chunks")


@pytest.fixture(scope="module")
def first(world: World, images: ImageClient) -> Uploaded:
    """Image ``marked`` (the minimal image + a marker file "v1") on n1@host1 and n2@host2;
    each sliver notes in its /tmp (a tmpfs of the running sliver) that it has been up."""
    done = images.upload("marked", marked_tree(world.base_dir / "marked", "v1"))
    _apply(world, BASE, timeout=90)
    for node in BASE:
        _sh(world, node, "echo up > /tmp/up")
    return done


@pytest.fixture(scope="module")
def bulk(world: World, images: ImageClient) -> tuple[Uploaded, dict[str, str]]:
    """Image ``bulk``: the minimal image + 32 MiB of random bytes (~8 s at the node cap)."""
    tree = bulk_tree(world.base_dir / "bulk", mib=BULK_MIB, seed=7)
    sums = {f"/bulk/{p.name}": _sha256(p) for p in sorted((tree / "bulk").iterdir())[::10]}
    return images.upload("bulk", tree), sums


def _bulk_ok(world: World, node: str, sums: dict[str, str]) -> None:
    out = _sh(world, node, "sha256sum " + " ".join(sums))
    got = {line.split()[1]: line.split()[0] for line in out.splitlines()}
    assert got == sums


def _percent(world: World, host: str, manifest: str) -> int:
    download = cache_report(world, host).get("downloads", {}).get(manifest)
    return int(download["percent"]) if download else 0


def test_an_imported_image_reaches_two_nodes_and_boots(world: World, first: Uploaded) -> None:
    assert first.info.name == "marked" and first.chunks > 0 and first.sent > 0
    status = world.member.slice_status(world.ref)
    assert {s.client_id: s.node for s in status.slivers} == {"n1": "host1", "n2": "host2"}
    for node in BASE:
        assert _sh(world, node, f"cat /{MARKER}") == "v1\n"
    for host in ("host1", "host2"):
        report = cache_report(world, host)
        assert first.info.manifest in {i["id"] for i in report["images"]}
        assert first.info.manifest in report["bound"].values()


def test_a_changed_file_sends_only_its_chunks_and_running_slivers_stay(
        world: World, images: ImageClient, first: Uploaded) -> None:
    _apply(world, BASE)
    before = held_chunks(world, "host1")
    second = images.upload("marked", marked_tree(world.base_dir / "marked", "v2"))
    assert second.info.manifest != first.info.manifest
    assert 1 <= second.chunks <= 3, f"{second.chunks} chunks sent for one changed file"
    assert second.sent * 100 < second.info.size, (second.sent, second.info.size)
    status = _apply(world, {**BASE, "n3": ("host1", "marked")})
    assert status.sliver("n3").node == "host1"
    assert _sh(world, "n3", f"cat /{MARKER}") == "v2\n"
    assert 1 <= len(held_chunks(world, "host1") - before) <= 3
    for node in BASE:  # not rebuilt, not restarted: the old version, the same running init
        assert _sh(world, node, f"cat /{MARKER}; cat /tmp/up") == "v1\nup\n"


def test_an_agent_killed_mid_download_resumes_and_verifies(
        world: World, first: Uploaded, bulk: tuple[Uploaded, dict[str, str]]) -> None:
    uploaded, sums = bulk
    manifest = ChunkStore(world.base_dir / "sdk-chunks").get_manifest(uploaded.info.manifest)
    sizes = manifest.unique_hashes()
    world.member.apply_topology(world.ref, _topology({**BASE, "b2": ("host2", "bulk")}))
    wait_for("host2 has 40 % of bulk", lambda: _percent(world, "host2", manifest.id) >= 40,
             timeout=60, every=0.1)
    kill_agent(world, "host2")
    held = held_chunks(world, "host2") & set(sizes)
    held_bytes = sum(sizes[h] for h in held)
    assert 0.3 < held_bytes / manifest.size < 0.95, held_bytes / manifest.size
    restarted = datetime.now(UTC)
    start_agent(world, "host2")
    first_report = wait_for("host2 reports progress after its restart", lambda: _fresh_download(
        world, "host2", manifest.id, after=restarted), timeout=30, every=0.1)
    assert first_report["done"] >= held_bytes, "chunks held before the kill were fetched again"
    _ready(world, timeout=60)
    _bulk_ok(world, "b2", sums)
    assert _sh(world, "n2", "cat /tmp/up") == "up\n"


def _fresh_download(world: World, host: str, manifest: str, *,
                    after: datetime) -> dict[str, int] | None:
    found = ImageClient.of(world.admin).node_cache(host)
    reported = found.get("reported")
    if reported is None or datetime.fromisoformat(reported) <= after:
        return None
    cache = found.get("cache") or {}
    download: dict[str, int] | None = cache.get("downloads", {}).get(manifest)
    if download is None and manifest in {i["id"] for i in cache.get("images", [])}:
        raise AssertionError("the download ended before the first report after the restart")
    return download


def _server_up(world: World) -> bool:
    try:
        url = f"{world.record.info['server']}/api/v1/health"
        return httpx.get(url, timeout=1).status_code == 200
    except httpx.TransportError:
        return False


def test_a_server_restarted_mid_download_completes(
        world: World, first: Uploaded, bulk: tuple[Uploaded, dict[str, str]]) -> None:
    uploaded, sums = bulk
    nodes = {**BASE, "b1": ("host1", "bulk")}
    world.member.apply_topology(world.ref, _topology(nodes))
    wait_for("host1 has 30 % of bulk",
             lambda: _percent(world, "host1", uploaded.info.manifest) >= 30,
             timeout=60, every=0.1)
    restart_server(world)
    wait_for("the server is back", lambda: _server_up(world), timeout=60)
    status = _ready(world, timeout=60)
    assert status.sliver("b1").node == "host1"
    _bulk_ok(world, "b1", sums)


def test_a_small_cache_collects_unpinned_images_and_says_when_it_cannot(
        world: World, images: ImageClient, first: Uploaded,
        bulk: tuple[Uploaded, dict[str, str]]) -> None:
    bulk_id = bulk[0].info.manifest
    _apply(world, {**BASE, "b1": ("host1", "bulk")}, timeout=60)
    _apply(world, BASE)  # bulk is no longer needed by any sliver on host1: unpinned
    kill_agent(world, "host1")
    start_agent(world, "host1", image_cache_mib=64)
    other = images.upload("other", marked_tree(world.base_dir / "other", "other"))
    _apply(world, {**BASE, "n4": ("host1", "other")})
    report = wait_for("host1 reports its cache without bulk", lambda: _without(
        cache_report(world, "host1"), bulk_id), timeout=20)
    assert report["usage"] <= report["quota"] == 64 << 20
    assert {first.info.manifest, other.info.manifest} <= {i["id"] for i in report["images"]}
    kept = set().union(*(_chunks(world, i["id"]) for i in report["images"]))
    assert not held_chunks(world, "host1") & (_chunks(world, bulk_id) - kept)
    world.member.apply_topology(world.ref, _topology({**BASE, "b3": ("host1", "bulk")}))
    error = wait_for("b3 fails for lack of cache space", lambda: _failed(world, "b3"),
                     timeout=30)
    assert "image cache needs" in error and "leases need" in error
    rows = node_cache_rows(world.admin, "host1")["rows"]
    assert any(r[0] == bulk_id[:12] and "image cache needs" in r[3] for r in rows), rows
    assert _sh(world, "n1", f"cat /{MARKER}; cat /tmp/up") == "v1\nup\n"
    _apply(world, BASE)


def _without(report: dict[str, Any], image: str) -> dict[str, Any] | None:
    held = {i["id"] for i in report.get("images", [])}
    return report if held and image not in held else None


def _chunks(world: World, manifest: str) -> set[str]:
    """The chunks of an image uploaded by these tests (from the uploader's chunk cache)."""
    return set(ChunkStore(world.base_dir / "sdk-chunks").get_manifest(manifest).unique_hashes())


def _failed(world: World, node: str) -> str | None:
    sliver = world.member.slice_status(world.ref).sliver(node)
    return sliver.error if sliver.state == "failed" and sliver.error else None

