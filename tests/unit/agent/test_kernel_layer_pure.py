"""Pure parts of the agent's kernel layer: specs, ledger, names, shaping, NAT, cgroup files."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

import pytest

from slicelab.agent.ledger import Ledger, Record, unwind, unwind_many
from slicelab.agent.net import names
from slicelab.agent.net.nat import dnat_rules, masquerade_rule
from slicelab.agent.net.shaping import tbf_params
from slicelab.agent.runtime import cgroups
from slicelab.agent.spec import InterfaceSpec, LinkSpec, PortRange, SliverSpec, spec_digest
from slicelab.domain.errors import InsufficientResources, InvalidInput
from slicelab.images.rootfs import elf_interpreter


def _spec(**changes: object) -> SliverSpec:
    values: dict[str, object] = {
        "sliver_id": "s1", "hostname": "n1.slice.proj.example", "cores": 1.5,
        "memory_mib": 256, "pids_max": 128, "image_dir": Path("/img"),
        "ports": PortRange(20000, 10)}
    values.update(changes)
    return SliverSpec(**values)  # type: ignore[arg-type]


@pytest.mark.parametrize("changes", [{"sliver_id": "../x"}, {"cores": 0}, {"memory_mib": 1},
                                     {"hostname": "bad host"}, {"files": (("passwd", ""),)}])
def test_bad_sliver_specs_name_the_field(changes: dict[str, object]) -> None:
    with pytest.raises(InvalidInput) as caught:
        _spec(**changes)
    assert caught.value.field


def test_interface_and_link_checks() -> None:
    with pytest.raises(InvalidInput, match="eth0"):
        InterfaceSpec(link_id="l", ifname="eth0")
    with pytest.raises(InvalidInput):
        InterfaceSpec(link_id="l", ifname="e1", ipv4="10.0.0.300/24")
    with pytest.raises(InvalidInput):
        LinkSpec(link_id="l", vni=0)
    with pytest.raises(InvalidInput):
        PortRange(65530, 10)


def test_digest_is_stable_and_sensitive() -> None:
    assert spec_digest(_spec()) == spec_digest(_spec())
    assert spec_digest(_spec()) != spec_digest(_spec(memory_mib=257))


def test_digests_stay_what_nodes_recorded() -> None:
    """The digest is the JSON of the spec's fields as ``dataclasses.asdict`` gives them: a
    node's ledger holds digests of that form, and an agent upgrade must not rebuild slivers
    whose spec did not change."""
    iface = InterfaceSpec("l-1", "eth1", "02:00:00:00:00:01", "10.0.0.1/24", 100)
    specs = [_spec(), _spec(interfaces=(iface,), files=(("manifest", "{}"),),
                            ssh_authorized_keys=("ssh-ed25519 AAAA k",)),
             LinkSpec("l-1", 4096, capacity_mbps=100, members=("s1", "s2"),
                      remotes=("192.0.2.2",))]
    for spec in specs:
        text = json.dumps(dataclasses.asdict(spec), sort_keys=True, default=str)
        assert spec_digest(spec) == hashlib.sha256(text.encode()).hexdigest()[:16]


def test_ledger_unwinds_newest_first_with_children_after_parent(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ns = ledger.begin("s", "netns", "ns")
    ledger.finish(ns)
    with ledger.step("s", "link", "veth", parent=ns.id) as veth:
        veth.data["ifindex"] = 7
    ledger.begin("s", "mount", "/m")  # an intent only: a crash before the mount
    ledger.begin("other", "netns", "keep")
    removed: list[tuple[str, bool]] = []

    def remove(record: Record) -> None:
        removed.append((record.name, record.done))

    unwind(ledger, "s", {"netns": remove, "link": remove, "mount": remove})
    assert removed == [("/m", False), ("ns", True), ("veth", True)]
    assert ledger.records("s") == [] and [r.name for r in ledger.records()] == ["keep"]
    assert ledger.find("s", "link", "veth") is None


def test_ledger_unwinds_many_owners_kind_by_kind_and_forgets_at_the_end(
        tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    for owner in ("a", "b"):
        ns = ledger.begin(owner, "netns", f"ns-{owner}")
        ledger.begin(owner, "link", f"veth-{owner}", parent=ns.id)
        ledger.begin(owner, "mount", f"/m-{owner}")
        ledger.begin(owner, "process", f"init-{owner}")
    ledger.begin("other", "netns", "keep")
    calls: list[tuple[str, ...]] = []

    def bulk(records: Sequence[Record]) -> None:
        assert len(ledger.records()) == 9, "nothing is forgotten before all is removed"
        calls.append(tuple(r.name for r in records))

    def single(record: Record) -> None:
        calls.append((record.name,))

    unwind_many(ledger, ["a", "b"], {"mount": single}, {"process": bulk, "netns": bulk,
                                                        "link": bulk},
                order=("process", "mount", "netns", "link"))
    assert calls == [("init-b", "init-a"), ("/m-b",), ("/m-a",), ("ns-b", "ns-a"),
                     ("veth-b", "veth-a")]
    assert [r.name for r in ledger.records()] == ["keep"]


def test_ledger_survives_reopening_and_allocates_addresses(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    ledger.begin("s", "netns", "ns", data={"a": 1})
    assert ledger.take_address("s", iter(["10.0.0.2", "10.0.0.3"])) == "10.0.0.2"
    assert ledger.take_address("t", iter(["10.0.0.2", "10.0.0.3"])) == "10.0.0.3"
    with pytest.raises(InsufficientResources):
        ledger.take_address("u", iter(["10.0.0.2"]))
    ledger.close()
    again = Ledger(tmp_path / "l.sqlite3")
    assert [(r.name, r.data, r.done) for r in again.records()] == [("ns", {"a": 1}, False)]
    assert again.address_of("s") == "10.0.0.2"
    again.drop_owner("s")
    assert again.address_of("s") is None


def test_names_are_short_prefixed_and_distinct() -> None:
    a = names.ifname("ab1", "v", "s1/l1")
    b = names.ifname("ab1", "v", "s1/l2")
    assert a != b and a.startswith("ab1v") and len(a) <= 15
    with pytest.raises(InvalidInput):
        names.check_prefix("Too-Long")


def test_tbf_bucket_grows_with_rate() -> None:
    small, big = tbf_params(10), tbf_params(1000)
    assert small.rate_bps == 10_000_000 and small.burst_bytes == 16 * 1500
    assert big.burst_bytes == 1_250_000


def test_nat_rules_map_ssh_and_same_numbered_ports() -> None:
    ssh, rest = dnat_rules("t", chain="prerouting", host_ip="192.0.2.1", target="10.0.0.2",
                           first_port=20000, count=10, comment="c")
    assert ssh["expr"][-1] == {"dnat": {"addr": "10.0.0.2", "port": 22}}
    assert rest["expr"][2]["match"]["right"] == {"range": [20001, 20009]}
    assert rest["expr"][-1] == {"dnat": {"addr": "10.0.0.2"}}
    assert len(dnat_rules("t", chain="output", host_ip="h", target="x", first_port=1,
                          count=1, comment="c")) == 1
    masq = masquerade_rule("t", subnet="10.0.0.0/24", bridge="br", comment="m")
    assert masq["expr"][0]["match"]["right"] == {"prefix": {"addr": "10.0.0.0", "len": 24}}


def test_cgroup_limits_are_written_for_v1_and_v2(tmp_path: Path) -> None:
    limits = cgroups.Limits(cores=1.5, memory_bytes=64 << 20, pids_max=50)
    v1 = cgroups.CgroupV1(prefix="p", root=tmp_path / "v1")
    v2 = cgroups.CgroupV2(prefix="p", root=tmp_path / "v2")
    for path in (*v1.dirs("s"), *v2.dirs("s")):
        path.mkdir(parents=True)
    v1.apply("s", limits)
    v2.apply("s", limits)
    cpu, memory, pids = v1.dirs("s")
    assert (cpu / "cpu.cfs_quota_us").read_text() == "150000"
    assert (memory / "memory.limit_in_bytes").read_text() == str(64 << 20)
    assert (pids / "pids.max").read_text() == "50"
    (group,) = v2.dirs("s")
    assert (group / "cpu.max").read_text() == "150000 100000"
    assert (group / "memory.max").read_text() == str(64 << 20)


def test_driver_selection_follows_the_v2_controllers(tmp_path: Path) -> None:
    (tmp_path / "unified").mkdir()
    (tmp_path / "unified" / "cgroup.procs").write_text("")
    (tmp_path / "unified" / "cgroup.controllers").write_text("hugetlb")
    assert cgroups.select_driver(prefix="p", root=tmp_path).version == 1
    assert cgroups.select_driver(prefix="p", root=tmp_path, mode="v2").version == 2
    (tmp_path / "unified" / "cgroup.controllers").write_text("cpu memory pids io")
    assert cgroups.select_driver(prefix="p", root=tmp_path).version == 2


def test_elf_interpreter_of_a_dynamic_binary() -> None:
    binary = Path("/usr/sbin/dropbear")
    if not binary.exists():
        pytest.skip("dropbear-bin is not installed")
    assert elf_interpreter(binary).name.startswith("ld-linux")
