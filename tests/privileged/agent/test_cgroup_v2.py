"""cgroup v2, forced: full slivers where v2 has the controllers, else a clear refusal."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from slicelab.agent.runtime import cgroups
from slicelab.agent.runtime.errors import KernelError
from slicelab.agent.runtime.node import NodeRuntime
from slicelab.agent.spec import SliverSpec, SliverState

pytestmark = pytest.mark.privileged

V2 = cgroups.CgroupV2(prefix="probe")


def test_v2_group_holds_and_kills_processes(make_runtime: Callable[..., NodeRuntime]) -> None:
    make_runtime()  # for the before/after check of cgroup directories
    driver = cgroups.select_driver(prefix="zv2", mode="v2")
    parents = driver.parents()
    made = [p for p in parents if not p.exists()]
    (group,) = driver.dirs("g1")
    sleeper = None
    try:
        for path in (*made, group):
            path.mkdir()
        sleeper = subprocess.Popen(["sleep", "30"])
        (group / "cgroup.procs").write_text(str(sleeper.pid))
        assert cgroups.procs(group) == [sleeper.pid]
        cgroups.remove_dir(group)
        assert sleeper.wait(timeout=5) == -9 and not group.exists()
    finally:
        if sleeper is not None and sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()
        for path in (group, *reversed(made)):
            if path.exists():
                path.rmdir()


@pytest.mark.skipif(not V2.missing_controllers(), reason="cgroup v2 has every controller")
def test_forced_v2_without_controllers_refuses_cleanly(
        make_runtime: Callable[..., NodeRuntime], image: Path,
        sliver: Callable[..., SliverSpec]) -> None:
    runtime = make_runtime(cgroup_mode="v2")
    with pytest.raises(KernelError, match="controller"):
        runtime.ensure_sliver(sliver(image, "v2a", port=25000))
    runtime.cleanup_all()
    assert runtime.ledger.records() == []


@pytest.mark.skipif(bool(V2.missing_controllers()), reason="cgroup v2 lacks controllers")
def test_forced_v2_limits(make_runtime: Callable[..., NodeRuntime], image: Path,
                          sliver: Callable[..., SliverSpec]) -> None:
    runtime = make_runtime(cgroup_mode="v2")
    runtime.ensure_sliver(sliver(image, "v2b", port=25010, memory_mib=48))
    (group,) = runtime.cgroups.dirs("v2b")
    assert (group / "memory.max").read_text().strip() == str(48 << 20)
    assert runtime.status("v2b").state is SliverState.RUNNING
