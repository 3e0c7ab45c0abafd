"""A sliver's root is mounted in its own small mount namespace, not on the host."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from slicelab.agent.runtime.mounts import is_mounted
from slicelab.agent.runtime.node import NodeRuntime
from slicelab.agent.spec import SliverSpec, SliverState

pytestmark = pytest.mark.privileged

Make = Callable[..., NodeRuntime]
Spec = Callable[..., SliverSpec]


def _mounts(init: int) -> list[str]:
    """The mount table of the init's parent (the init itself sees it from its root)."""
    parent = Path(f"/proc/{init}/stat").read_text().rsplit(")", 1)[1].split()[1]
    return Path(f"/proc/{parent}/mountinfo").read_text().splitlines()


def test_root_lives_in_the_slivers_mount_namespace(
    make_runtime: Make, image: Path, sliver: Spec
) -> None:
    runtime = make_runtime()
    runtime.ensure_slivers([sliver(image, f"m{i}", port=21600 + 10 * i) for i in range(3)])
    root = runtime.state_dir / "slivers" / "m0" / "root"
    assert not is_mounted(root)  # nothing on the host to unmount
    init = runtime.status("m0").init_pid
    assert init is not None
    inside = _mounts(init)
    assert any(f" {root} " in line and "overlay" in line for line in inside)
    # a copy of the launcher's small table: no other sliver's root, no netns file
    assert not any("/slivers/m1/" in line or "/netns/" in line for line in inside)
    assert len(inside) < 60
    code, out, _ = runtime.exec("m0", ["cat", "/etc/hostname", "/etc/slicelab/slice.urn"])
    assert code == 0 and out.startswith("m0.exp.proj.test\n"), out
    code, out, _ = runtime.exec("m0", ["stat", "-c", "%a", "/root/.ssh"])
    assert (code, out.strip()) == (0, "700")


def test_files_reach_a_running_and_a_stopped_sliver(
    make_runtime: Make, image: Path, sliver: Spec
) -> None:
    runtime = make_runtime()
    spec = sliver(image, "f1", port=21700)
    runtime.ensure_sliver(spec)
    runtime.ensure_sliver(dataclasses.replace(spec, files=(("slice.urn", "running"),)))
    assert runtime.exec("f1", ["cat", "/etc/slicelab/slice.urn"])[1] == "running"
    runtime.stop("f1", timeout=1.0)
    assert runtime.status("f1").state is SliverState.STOPPED
    runtime.ensure_sliver(dataclasses.replace(spec, files=(("slice.urn", "stopped"),)))
    assert runtime.status("f1").state is SliverState.RUNNING
    assert runtime.exec("f1", ["cat", "/etc/slicelab/slice.urn"])[1] == "stopped"
