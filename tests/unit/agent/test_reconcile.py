"""Reconcile: document -> specs, diffs against the runtime, boot states, commands."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pytest

from slicelab.agent.reconcile import BOOT_PLANS, ImageCache, Reconciler, link_spec, sliver_spec
from slicelab.agent.runtime.errors import KernelError
from slicelab.agent.spec import SliverSpec, SliverState, SliverStatus
from slicelab.agent.state import AgentFiles
from slicelab.domain.errors import InvalidInput
from slicelab.testbed.fakes import FakeRuntime, tar_of

NODE = {"id": "n-1", "name": "host1", "urn": "urn:publicid:IDN+test+node+host1"}


def _sliver(sliver_id: str, **extra: Any) -> dict[str, Any]:
    return {"sliver_id": sliver_id, "urn": f"urn:publicid:IDN+test+sliver+{sliver_id}",
            "slice_urn": "urn:publicid:IDN+test+slice+s", "hostname": f"{sliver_id}.s.p.test",
            "image": "minimal", "cores": 1.0, "memory_mib": 64, "pids_max": 64,
            "run": "started", "restart_seq": 0, "ssh_keys": ["ssh-ed25519 AAAA alice"],
            "manifest": "<rspec/>", "control": {"first_port": 20000, "count": 10},
            "interfaces": [{"link_id": "l-1", "ifname": "eth1", "ipv4": "10.128.0.1/24",
                            "mac": "02:00:00:00:00:01", "capacity_mbps": 100}], **extra}


LINK = {"link_id": "l-1", "vni": 4100, "capacity_mbps": 100, "local_slivers": ["s-1"],
        "remote_hosts": ["172.31.250.3"]}


def _doc(generation: int = 1, **extra: Any) -> dict[str, Any]:
    return {"generation": generation, "boot_state": "boot", "node": NODE,
            "slivers": [_sliver("s-1")], "links": [LINK], "commands": [], **extra}


class Images:
    def __init__(self) -> None:
        self.fetched: list[str] = []

    def __call__(self, name: str, sink: IO[bytes]) -> None:
        self.fetched.append(name)
        sink.write(tar_of({"etc/os-release": b"ID=minimal\n"}))


@pytest.fixture
def runtime() -> FakeRuntime:
    return FakeRuntime()


@pytest.fixture
def images() -> Images:
    return Images()


def _reconciler(runtime: FakeRuntime, tmp_path: Path, images: Images) -> Reconciler:
    files = AgentFiles(tmp_path / "state")
    return Reconciler(runtime, files, ImageCache(files.images, fetch=images),
                      host_ip="172.31.250.2", inventory=lambda: {"cores": 2})


def test_the_document_maps_to_specs(tmp_path: Path) -> None:
    spec = sliver_spec(_sliver("s-1"), image_dir=tmp_path, node_urn=NODE["urn"])
    assert spec.ports.first_port == 20000 and spec.ports.count == 10
    assert dict(spec.files) == {"slice.urn": "urn:publicid:IDN+test+slice+s\n",
                                "node.urn": NODE["urn"] + "\n", "manifest": "<rspec/>"}
    assert spec.interfaces[0].ifname == "eth1" and spec.interfaces[0].capacity_mbps == 100
    assert spec.ssh_authorized_keys == ("ssh-ed25519 AAAA alice",)
    link = link_spec(LINK, local_ip="172.31.250.2")
    assert (link.vni, link.members, link.remotes) == (4100, ("s-1",), ("172.31.250.3",))
    with pytest.raises(InvalidInput):
        sliver_spec({"sliver_id": "s-1"}, image_dir=tmp_path, node_urn="")


def test_boot_builds_once_and_is_idempotent(runtime: FakeRuntime, tmp_path: Path,
                                            images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    actual = reconciler.apply(_doc(), now=0)
    assert runtime.calls == [("ensure_link", "l-1"), ("ensure_sliver", "s-1")]
    assert actual["generation_applied"] == 1 and actual["boot_state"] == "boot"
    assert actual["slivers"][0]["state"] == "ready"
    assert actual["slivers"][0]["ssh"] == {"host": "172.31.250.2", "port": 20000}
    assert actual["links"] == [{"link_id": "l-1", "state": "ready", "error": None}]
    reconciler.apply(_doc(), now=0)
    assert len(runtime.calls) == 2
    assert images.fetched == ["minimal"]
    assert (tmp_path / "state/images/minimal/etc/os-release").read_bytes() == b"ID=minimal\n"


def test_what_is_not_desired_is_removed(runtime: FakeRuntime, tmp_path: Path,
                                        images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    reconciler.apply(_doc(slivers=[_sliver("s-1"), _sliver("s-2", interfaces=[])]), now=0)
    runtime.calls.clear()
    actual = reconciler.apply(_doc(2, slivers=[_sliver("s-2", interfaces=[])], links=[]),
                              now=0)
    assert runtime.calls == [("remove_sliver", "s-1"), ("remove_link", "l-1")]
    assert [s["sliver_id"] for s in actual["slivers"]] == ["s-2"]


def test_a_changed_sliver_is_ensured_again(runtime: FakeRuntime, tmp_path: Path,
                                           images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    reconciler.apply(_doc(), now=0)
    runtime.calls.clear()
    reconciler.apply(_doc(2, slivers=[_sliver("s-1", memory_mib=128)]), now=0)
    assert runtime.calls == [("ensure_sliver", "s-1")]


def test_run_stopped_and_restart_seq_are_honoured(runtime: FakeRuntime, tmp_path: Path,
                                                  images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    reconciler.apply(_doc(), now=0)
    actual = reconciler.apply(_doc(2, slivers=[_sliver("s-1", run="stopped")]), now=0)
    assert ("stop", "s-1") in runtime.calls
    assert actual["slivers"][0]["state"] == "stopped"
    runtime.calls.clear()
    reconciler.apply(_doc(3, slivers=[_sliver("s-1", restart_seq=1)]), now=0)
    assert runtime.calls == [("ensure_sliver", "s-1"), ("restart", "s-1")]
    runtime.calls.clear()
    again = _reconciler(runtime, tmp_path, images)
    again.apply(_doc(3, slivers=[_sliver("s-1", restart_seq=1)]), now=0)
    assert runtime.calls == []


def test_an_expired_lease_stops_the_sliver(runtime: FakeRuntime, tmp_path: Path,
                                           images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    doc = _doc(slivers=[_sliver("s-1", expires="2024-01-01T00:00:00Z")])
    deadline = 1704067200.0
    reconciler.apply(doc, now=deadline - 10)
    assert reconciler.next_expiry(doc, now=deadline - 10) == pytest.approx(10)
    actual = reconciler.apply(doc, now=deadline)
    assert runtime.slivers["s-1"][1] is SliverState.STOPPED
    assert actual["slivers"][0]["state"] == "stopped"
    assert reconciler.next_expiry(doc, now=deadline) is None


def test_one_failing_sliver_does_not_stop_the_others(runtime: FakeRuntime, tmp_path: Path,
                                                     images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    bad = _sliver("s-bad", interfaces=[], cores=-1)
    actual = reconciler.apply(_doc(slivers=[bad, _sliver("s-1")]), now=0)
    states = {s["sliver_id"]: (s["state"], s["error"]) for s in actual["slivers"]}
    assert states["s-1"] == ("ready", None)
    assert states["s-bad"][0] == "failed" and "cores" in states["s-bad"][1]


@pytest.mark.parametrize("boot_state", ["new", "install", "debug", "disabled"])
def test_non_boot_states_stop_every_sliver_and_keep_them(runtime: FakeRuntime, tmp_path: Path,
                                                         images: Images,
                                                         boot_state: str) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    reconciler.apply(_doc(), now=0)
    actual = reconciler.apply(_doc(2, boot_state=boot_state), now=0)
    assert runtime.slivers["s-1"][1] is SliverState.STOPPED
    assert "l-1" in runtime.links
    assert actual["boot_state"] == BOOT_PLANS[boot_state].reports == boot_state


def test_reinstall_removes_everything_then_reports_install(runtime: FakeRuntime,
                                                           tmp_path: Path,
                                                           images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    reconciler.apply(_doc(), now=0)
    actual = reconciler.apply(_doc(2, boot_state="reinstall"), now=0)
    assert runtime.slivers == {} and runtime.links == {}
    assert runtime.ledger.owners() == []
    assert actual["boot_state"] == "install"


def test_commands_run_at_most_once_and_results_wait_for_posting(
        runtime: FakeRuntime, tmp_path: Path, images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    command = {"id": "c-1", "type": "exec", "sliver_id": "s-1", "argv": ["echo", "ok"],
               "timeout": 5}
    reconciler.apply(_doc(commands=[command]), now=0)
    assert reconciler.pending_results() == {"c-1": {"exit_code": 0, "stdout": "ok\n",
                                                    "stderr": ""}}
    reconciler.mark_posted("c-1")
    restarted = _reconciler(runtime, tmp_path, images)
    restarted.apply(_doc(commands=[command]), now=0)
    assert [c for c in runtime.calls if c[0] == "exec"] == [("exec", "s-1:echo ok")]
    assert restarted.pending_results() == {}


def test_a_command_interrupted_by_a_crash_is_reported_not_rerun(
        runtime: FakeRuntime, tmp_path: Path, images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    reconciler.progress.commands["c-1"] = None
    reconciler.files.save_progress(reconciler.progress)
    command = {"id": "c-1", "type": "exec", "sliver_id": "s-1", "argv": ["x"]}
    restarted = _reconciler(runtime, tmp_path, images)
    restarted.apply(_doc(commands=[command]), now=0)
    assert not [c for c in runtime.calls if c[0] == "exec"]
    assert restarted.pending_results()["c-1"]["exit_code"] == -1


def test_commands_outside_boot_or_for_absent_slivers_fail(runtime: FakeRuntime,
                                                          tmp_path: Path,
                                                          images: Images) -> None:
    reconciler = _reconciler(runtime, tmp_path, images)
    commands = [{"id": "c-1", "type": "exec", "sliver_id": "s-9", "argv": ["x"]}]
    reconciler.apply(_doc(commands=commands), now=0)
    assert "not running" in reconciler.pending_results()["c-1"]["stderr"]
    commands = [{"id": "c-2", "type": "exec", "sliver_id": "s-1", "argv": ["x"]}]
    reconciler.apply(_doc(boot_state="debug", commands=commands), now=0)
    assert "boot state" in reconciler.pending_results()["c-2"]["stderr"]


def test_an_interrupted_image_fetch_leaves_no_image(tmp_path: Path) -> None:
    def broken(name: str, sink: IO[bytes]) -> None:
        sink.write(tar_of({"a": b"1"})[:100])
        raise OSError("connection cut")

    cache = ImageCache(tmp_path / "images", fetch=broken)
    with pytest.raises(OSError):
        cache.ensure("minimal")
    assert not (tmp_path / "images/minimal").exists()
    with pytest.raises(InvalidInput):
        cache.ensure("../etc")


class _BulkRuntime(FakeRuntime):
    """A runtime whose bulk calls are recorded as such; sliver ``bad`` cannot be built."""

    def ensure_slivers(self, specs: Sequence[SliverSpec]) -> list[SliverStatus]:
        self.calls.append(("ensure_slivers", ",".join(s.sliver_id for s in specs)))
        if any(s.sliver_id == "bad" for s in specs):
            raise KernelError("the init of sliver bad did not start")
        return [self.ensure_sliver(spec) for spec in specs]

    def ensure_sliver(self, spec: SliverSpec) -> SliverStatus:
        if spec.sliver_id == "bad":
            raise KernelError("the init of sliver bad did not start")
        return super().ensure_sliver(spec)

    def remove_slivers(self, sliver_ids: Sequence[str]) -> None:
        self.calls.append(("remove_slivers", ",".join(sliver_ids)))
        super().remove_slivers(sliver_ids)


def test_slivers_are_built_and_removed_in_bulk(tmp_path: Path, images: Images) -> None:
    runtime = _BulkRuntime()
    reconciler = _reconciler(runtime, tmp_path, images)
    reconciler.apply(_doc(slivers=[_sliver("s-1"), _sliver("s-2", interfaces=[])]), now=0)
    assert ("ensure_slivers", "s-1,s-2") in runtime.calls
    runtime.calls.clear()
    reconciler.apply(_doc(2, slivers=[], links=[]), now=0)
    assert runtime.calls[0] == ("remove_slivers", "s-1,s-2")


def test_one_failing_sliver_does_not_fail_the_others(tmp_path: Path, images: Images) -> None:
    runtime = _BulkRuntime()
    reconciler = _reconciler(runtime, tmp_path, images)
    slivers = [_sliver("s-1"), _sliver("bad", interfaces=[]), _sliver("s-2", interfaces=[])]
    actual = reconciler.apply(_doc(slivers=slivers), now=0)
    states = {s["sliver_id"]: (s["state"], s["error"]) for s in actual["slivers"]}
    assert states["s-1"] == ("ready", None) and states["s-2"] == ("ready", None)
    assert states["bad"][0] == "failed" and "did not start" in str(states["bad"][1])
