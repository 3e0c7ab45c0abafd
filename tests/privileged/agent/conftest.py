"""Fixtures for the kernel layer's privileged tests: real objects, removed by id."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from slicelab.agent.runtime.node import NodeRuntime
from slicelab.agent.spec import InterfaceSpec, PortRange, SliverSpec
from slicelab.images.rootfs import build_minimal

_counter = itertools.count()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/privileged" in str(item.fspath) and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason="needs root"))


def _ours(name: str) -> bool:
    """Objects of this suite: every prefix here starts with "z" (others run concurrently)."""
    return (name.startswith(("z", "slicelab-z", "slicelab_z", "slicelab-test-z"))
            or "/slicelab/z" in name or "/netns/slicelab-z" in name
            or "/netns/slicelab-test-z" in name
            or (_BASETEMP[0] is not None and str(_BASETEMP[0]) in name))


_BASETEMP: list[Path | None] = [None]


@pytest.fixture(scope="session", autouse=True)
def _basetemp(tmp_path_factory: pytest.TempPathFactory) -> None:
    _BASETEMP[0] = tmp_path_factory.getbasetemp()


def snapshot() -> dict[str, set[str]]:
    """This suite's kernel objects (netns, links by ifindex, cgroups, mounts, nft tables)."""
    from pyroute2 import IPRoute, netns

    with IPRoute() as ipr:
        links = {f"{m['index']}:{m.get_attr('IFLA_IFNAME')}" for m in ipr.get_links()
                 if _ours(str(m.get_attr("IFLA_IFNAME")))}
    cgroups = {str(p) for c in ("cpu", "memory", "pids", "unified")
               for p in Path("/sys/fs/cgroup", c).rglob("*") if p.is_dir()}
    mounts = {" ".join(m.split()[3:5])
              for m in Path("/proc/self/mountinfo").read_text().splitlines()}
    tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True,
                            check=True).stdout.splitlines()
    found = {"netns": set(netns.listnetns()), "links": links, "cgroups": cgroups,
             "mounts": mounts, "nft": {t.split()[-1] for t in tables}}
    return {kind: {n for n in names if _ours(n.split(":", 1)[-1])}
            for kind, names in found.items()}


def assert_same(before: dict[str, set[str]], after: dict[str, set[str]]) -> None:
    extra = {k: after[k] - before[k] for k in before if after[k] - before[k]}
    assert not extra, f"left behind: {extra}"


@pytest.fixture(scope="session")
def image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_minimal(tmp_path_factory.mktemp("image") / "minimal")


@pytest.fixture
def make_runtime(tmp_path: Path) -> Iterator[Callable[..., NodeRuntime]]:
    """NodeRuntime factory; every runtime made is cleaned up and checked, even on failure."""
    before = snapshot()
    made: list[NodeRuntime] = []

    def make(**options: object) -> NodeRuntime:
        n = next(_counter)
        settings: dict[str, object] = {
            "state_dir": tmp_path / f"state{n}",
            "prefix": f"z{(os.getpid() * 100 + n) % 10**4:04d}",
            "control_subnet": f"10.213.{n % 200}.0/24", "host_ip": f"10.213.{n % 200}.1",
            "stop_timeout": 2.0}
        settings.update(options)
        runtime = NodeRuntime(**settings)  # type: ignore[arg-type]
        made.append(runtime)
        return runtime

    yield make
    for runtime in reversed(made):
        runtime.cleanup_all()
        runtime.close()
    assert_same(before, snapshot())


def make_spec(image: Path, sliver_id: str, *, port: int, ifaces: tuple[InterfaceSpec, ...] = (),
           memory_mib: int = 64, pids_max: int = 64, keys: tuple[str, ...] = ()) -> SliverSpec:
    return SliverSpec(sliver_id=sliver_id, hostname=f"{sliver_id}.exp.proj.test", cores=0.5,
                      memory_mib=memory_mib, pids_max=pids_max, image_dir=image,
                      ports=PortRange(port, 10), interfaces=ifaces,
                      files=(("slice.urn", "urn:publicid:IDN+test+slice+exp"),),
                      ssh_authorized_keys=keys)


@pytest.fixture
def sliver() -> Callable[..., SliverSpec]:
    """``sliver(image, id, port=...)``: a small sliver spec."""
    return make_spec


CHILD = Path(__file__).with_name("agent_child.py")


def run_child(job: dict[str, object], *, netns: str | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run agent_child.py with ``job`` (inside network namespace ``netns`` if given)."""
    argv = [sys.executable, str(CHILD), json.dumps(job)]
    if netns is not None:
        argv = ["nsenter", f"--net=/var/run/netns/{netns}", "--", *argv]
    src = str(Path(__file__).resolve().parents[3] / "src")
    env = {**os.environ, "PYTHONPATH": src}
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env,
                          check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"child failed ({done.returncode}): {done.stderr}")
    return done


@pytest.fixture
def children() -> Iterator[Callable[..., subprocess.CompletedProcess[str]]]:
    """Runs agent children; afterwards cleans up every state dir they used and checks."""
    before = snapshot()
    jobs: list[tuple[dict[str, object], str | None]] = []

    def run(job: dict[str, object], *, netns: str | None = None,
            check: bool = True) -> subprocess.CompletedProcess[str]:
        jobs.append((job, netns))
        return run_child(job, netns=netns, check=check)

    yield run
    for job, netns in reversed(jobs):
        run_child({**job, "actions": [["cleanup"]], "kill_at": None}, netns=netns,
                  check=False)
    assert_same(before, snapshot())
