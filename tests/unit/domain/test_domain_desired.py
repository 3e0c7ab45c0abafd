"""Desired state documents and generations."""

from __future__ import annotations

import pytest

from slicelab.domain.desired import (
    CommandPlan,
    LinkPlan,
    SliverInterface,
    SliverPlan,
    desired_document,
    document_digest,
    next_generation,
    sliver_hostname,
)
from slicelab.domain.errors import InvalidTopology
from slicelab.domain.nodes import BootState, Node, node_urn


def _node(name: str) -> Node:
    return Node(id=f"n-{name}", name=name, site="lab", urn=node_urn("sl.test", name),
                boot_state=BootState.BOOT)


def _sliver(sid: str, node: str, link: str | None = None) -> SliverPlan:
    ifaces = (SliverInterface(link, "eth1", "10.128.0.1/24", "02:00:00:00:00:01", 100),) \
        if link else ()
    return SliverPlan(sliver_id=sid, node_id=f"n-{node}", urn=f"urn:x+sliver+{sid}",
                      slice_urn="urn:x+slice+s", project="p", slice="s", client_id=sid,
                      hostname=f"{sid}.s.p.slicelab.test", image="minimal", cores=1.0,
                      memory_mib=256, disk_gib=1, first_port=20000, port_count=10,
                      interfaces=ifaces)


HOSTS = {"n-h1": "172.31.250.2", "n-h2": "172.31.250.3", "n-h3": "172.31.250.4"}


def test_each_node_sees_its_slivers_and_the_remote_ends_of_its_links() -> None:
    slivers = [_sliver("s-a", "h1", "l-1"), _sliver("s-b", "h2", "l-1"), _sliver("s-c", "h3")]
    links = [LinkPlan("l-1", 4096, ("s-a", "s-b"), 100)]
    doc = desired_document(_node("h1"), domain="slicelab.test", slivers=slivers, links=links,
                           hosts=HOSTS)
    assert [s["sliver_id"] for s in doc["slivers"]] == ["s-a"]
    assert doc["links"] == [{"link_id": "l-1", "vni": 4096, "capacity_mbps": 100,
                             "local_slivers": ["s-a"], "remote_hosts": ["172.31.250.3"]}]
    assert doc["node"] == {"id": "n-h1", "name": "h1", "urn": "urn:publicid:IDN+sl.test+node+h1",
                           "domain": "slicelab.test"}
    sliver = doc["slivers"][0]
    assert sliver["control"] == {"first_port": 20000, "count": 10}
    assert sliver["interfaces"][0]["ifname"] == "eth1" and sliver["run"] == "started"
    third = desired_document(_node("h3"), domain="slicelab.test", slivers=slivers,
                             links=links, hosts=HOSTS)
    assert third["links"] == [] and [s["sliver_id"] for s in third["slivers"]] == ["s-c"]


def test_a_link_within_one_node_has_no_remote_hosts() -> None:
    slivers = [_sliver("s-a", "h1", "l-1"), _sliver("s-b", "h1", "l-1")]
    doc = desired_document(_node("h1"), domain="d", slivers=slivers,
                           links=[LinkPlan("l-1", 4097, ("s-a", "s-b"))], hosts=HOSTS)
    assert doc["links"][0]["local_slivers"] == ["s-a", "s-b"]
    assert doc["links"][0]["remote_hosts"] == []


def test_commands_go_only_to_their_node() -> None:
    cmd = CommandPlan("c-1", "n-h2", "s-b", ("true",), 5)
    doc = desired_document(_node("h1"), domain="d", slivers=[], links=[], hosts={},
                           commands=[cmd])
    assert doc["commands"] == []
    doc = desired_document(_node("h2"), domain="d", slivers=[], links=[], hosts={},
                           commands=[cmd])
    assert doc["commands"] == [{"id": "c-1", "type": "exec", "sliver_id": "s-b",
                                "argv": ["true"], "timeout": 5}]


def test_generation_goes_up_exactly_on_change() -> None:
    doc = desired_document(_node("h1"), domain="d", slivers=[], links=[], hosts={})
    gen, digest, full = next_generation(0, None, doc)
    assert gen == 1 and full["generation"] == 1 and digest == document_digest(full)
    again, same, _ = next_generation(gen, digest, doc)
    assert (again, same) == (1, digest)
    changed = desired_document(_node("h1"), domain="d", slivers=[_sliver("s-a", "h1")],
                               links=[], hosts={})
    assert next_generation(gen, digest, changed)[0] == 2


def test_hostname_is_node_slice_project_domain() -> None:
    assert sliver_hostname("n1", "s", "p", "slicelab.test") == "n1.s.p.slicelab.test"
    with pytest.raises(InvalidTopology):
        sliver_hostname("Not_A_Label", "s", "p", "slicelab.test")
