"""One ensure_slivers of many: chunks of host batches, pairs made as their members come."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from slicelab.agent.runtime import node
from slicelab.agent.runtime.node import NodeRuntime
from slicelab.agent.spec import InterfaceSpec, LinkSpec, SliverSpec, SliverState

pytestmark = pytest.mark.privileged

Make = Callable[..., NodeRuntime]
Spec = Callable[..., SliverSpec]


def _ends(image: Path, sliver: Spec, link: str, ids: tuple[str, str],
          net: int) -> list[SliverSpec]:
    return [
        sliver(image, sliver_id, port=22000 + 10 * net + side,
               ifaces=(InterfaceSpec(link_id=link, ifname=f"e{link}",
                                     ipv4=f"10.57.{net}.{side + 1}/24"),))
        for side, sliver_id in enumerate(ids)
    ]


def _tbf(ns: str, ifname: str) -> str:
    return subprocess.run(["tc", "-n", ns, "qdisc", "show", "dev", ifname],
                          capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("chunk", [1, 2, 16])
def test_pairs_split_over_chunks_are_made_and_configured(
        make_runtime: Make, image: Path, sliver: Spec, monkeypatch: pytest.MonkeyPatch,
        chunk: int) -> None:
    """Chunk 1: every pair's first member is configured before its second exists; chunk 2:
    the pair (y1, y3) spans two chunks, (y2, y4) too; chunk 16: all in one chunk."""
    monkeypatch.setattr(node, "_BUILD_CHUNK", chunk)
    runtime = make_runtime()
    for link, members in (("p", ("y1", "y3")), ("q", ("y2", "y4"))):
        runtime.ensure_link(LinkSpec(link_id=link, vni=330, capacity_mbps=30, members=members))
    p = _ends(image, sliver, "p", ("y1", "y3"), 1)
    q = _ends(image, sliver, "q", ("y2", "y4"), 2)
    statuses = runtime.ensure_slivers([p[0], q[0], p[1], q[1]])
    assert [s.state for s in statuses] == [SliverState.RUNNING] * 4
    assert [s.interfaces for s in statuses] == [("ep",), ("eq",), ("ep",), ("eq",)]
    for source, target in (("y1", "10.57.1.2"), ("y4", "10.57.2.1")):
        code, out, _ = runtime.exec(source, ["ping", "-c", "1", "-W", "2", target])
        assert code == 0, out
    for status, ifname in zip(statuses, ("ep", "eq", "ep", "eq"), strict=True):
        assert status.netns is not None
        assert "tbf" in _tbf(status.netns, ifname)
    records = [r for r in runtime.ledger.records() if r.kind in ("link", "qdisc")]
    assert all(r.done for r in records)
    pair_links = [r for r in records if r.owner.startswith("link:") and r.kind == "link"]
    assert sorted(r.name for r in pair_links) == ["ep", "eq"]
    assert all("ifindex" in r.data and "peer_index" in r.data for r in pair_links)


def test_a_pair_to_a_sliver_outside_the_build(make_runtime: Make, image: Path,
                                              sliver: Spec) -> None:
    """The pair's other member exists already (not rebuilt): its end is looked up and
    configured through a socket opened for it."""
    runtime = make_runtime()
    runtime.ensure_link(LinkSpec(link_id="r", vni=331, capacity_mbps=30, members=("x1", "x2")))
    first, second = _ends(image, sliver, "r", ("x1", "x2"), 3)
    runtime.ensure_slivers([first])  # the pair waits for its second member
    runtime.ensure_slivers([first, second])
    code, out, _ = runtime.exec("x2", ["ping", "-c", "1", "-W", "2", "10.57.3.1"])
    assert code == 0, out
    ns = runtime.status("x1").netns
    assert ns is not None and "tbf" in _tbf(ns, "er")


def test_files_written_right_after_a_build_land_in_the_slivers(make_runtime: Make, image: Path,
                                                               sliver: Spec) -> None:
    """ensure returns once the init is in its own root: identity files written through
    the running init's root right after it reach the sliver, never the host's /etc."""
    host = Path("/etc/slicelab/slice.urn")
    before = host.read_text() if host.exists() else None
    runtime = make_runtime()
    for n in range(6):
        spec = sliver(image, f"w{n}", port=22100 + 10 * n)
        runtime.ensure_slivers([spec])
        runtime.ensure_slivers([dataclasses.replace(spec, files=(("slice.urn", f"w{n}"),))])
        code, out, _ = runtime.exec(spec.sliver_id, ["cat", "/etc/slicelab/slice.urn"])
        assert (code, out) == (0, f"w{n}")
        runtime.remove_sliver(spec.sliver_id)
    assert (host.read_text() if host.exists() else None) == before
