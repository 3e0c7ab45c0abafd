"""topology -> JSON -> topology, topology -> request RSpec -> topology, and the file format."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from rspec_offers import AGG, lab_offer

from slicelab.domain.errors import InvalidTopology
from slicelab.domain.resources import Resources
from slicelab.domain.topology import (
    Execute,
    Install,
    InterfaceRequest,
    LinkRequest,
    NodeRequest,
    Topology,
)
from slicelab.rspec import (
    build_request,
    loads_topology,
    parse_request,
    topology_from_json,
    topology_to_json,
)
from slicelab.rspec.document import load_document
from slicelab.rspec.schema import SchemaKind, schema_issues

NAME = st.from_regex(r"[a-z][a-z0-9-]{0,8}", fullmatch=True)
TEXT = st.text(st.characters(min_codepoint=33, max_codepoint=126, exclude_characters="<&"),
               min_size=1, max_size=12)


@st.composite
def topologies(draw: st.DrawFn) -> Topology:
    names = draw(st.lists(NAME, min_size=1, max_size=5, unique=True))
    nodes = tuple(draw(_node(n)) for n in names)
    interfaces: list[InterfaceRequest] = []
    for n, name in enumerate(names):
        for k in range(draw(st.integers(0, 3))):
            ip = draw(st.none() | st.just(f"10.{n}.{k}.1/{draw(st.integers(8, 30))}"))
            interfaces.append(InterfaceRequest(f"{name}:if{k}", name, ipv4=ip))
    ids = [i.client_id for i in interfaces]
    links: list[LinkRequest] = []
    while len(ids) >= 2 and draw(st.booleans()):
        size = draw(st.integers(2, len(ids)))
        members, ids = ids[:size], ids[size:]
        links.append(LinkRequest(
            f"link{len(links)}", tuple(members),
            capacity_mbps=draw(st.none() | st.integers(1, 100_000)),
            latency_ms=draw(st.none() | st.floats(0.001, 1000)),
            packet_loss=draw(st.none() | st.floats(0.0001, 1.0))))
    return Topology(nodes=nodes, interfaces=tuple(interfaces), links=tuple(links))


@st.composite
def _node(draw: st.DrawFn, name: str) -> NodeRequest:
    res = Resources(draw(st.integers(0, 64_000)), draw(st.integers(0, 1 << 20)),
                    draw(st.integers(0, 4096)),
                    devices=tuple((d, 1) for d in draw(st.lists(NAME, max_size=2, unique=True))))
    return NodeRequest(
        client_id=name, resources=res, image=draw(st.sampled_from([None, "ubuntu-22.04",
                                                                   "debian-12"])),
        exclusive=draw(st.booleans()), component_manager_id=draw(st.sampled_from([None, AGG])),
        component_id=draw(st.none() | st.just(f"urn:publicid:IDN+lab+node+{name}")),
        installs=tuple(Install(u, p) for u, p in draw(st.lists(st.tuples(TEXT, TEXT),
                                                                max_size=2))),
        executes=tuple(Execute(c, s) for c, s in draw(st.lists(
            st.tuples(TEXT, st.sampled_from(["sh", "bash"])), max_size=2))))


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_json_round_trip(topology: Topology) -> None:
    text = json.dumps(topology_to_json(topology))
    assert topology_from_json(json.loads(text)) == topology


@settings(max_examples=60, deadline=None)
@given(topologies())
def test_request_rspec_round_trip(topology: Topology) -> None:
    data = build_request(topology)
    assert schema_issues(load_document(data), kind=SchemaKind.REQUEST) == []
    parsed = parse_request(data, offer=lab_offer())
    assert parsed.topology == topology


TOPOLOGY_FILE = """
nodes:
  - {name: a, image: ubuntu-22.04, cores: 2, memory: 2GiB, disk: 10, devices: [gpu]}
  - {name: b, cores: 0.5, memory: 512}
  - name: c
    execute: ["echo hi"]
links:
  - {name: ab, members: [a, "b:10.0.0.2/24"], capacity: 100Mbit, addresses: 10.0.0.0/24}
lans:
  - {name: lan0, members: [a, b, c], capacity: 1Gbit, latency: 5ms, loss: 1%}
"""


def test_topology_file() -> None:
    topo = loads_topology(TOPOLOGY_FILE)
    a = topo.node("a")
    assert (a.resources.cores, a.resources.memory_mib, a.resources.disk_gib) == (2, 2048, 10)
    assert a.resources.device_counts == {"gpu": 1}
    assert topo.interface("a:ab").ipv4 == "10.0.0.1/24"
    assert topo.interface("b:ab").ipv4 == "10.0.0.2/24"
    lan = topo.links[1]
    assert lan.is_lan and lan.capacity_mbps == 1000 and lan.packet_loss == 0.01
    assert topo.node("c").executes == (Execute("echo hi"),)
    again = topology_from_json(topology_to_json(topo))
    assert topology_to_json(again) == topology_to_json(topo)


@pytest.mark.parametrize(("text", "words"), [
    ("nodes: [{name: a, memry: 5}]", "unknown key(s) memry"),
    ("nodes: [{name: a, memory: lots}]", "nodes[0].memory"),
    ("nodes: [{name: a}]\nlinks: [{name: l, members: [a, z]}]", "unknown node 'z'"),
    ("nodes: [{name: a}, {name: b}]\nlinks: [{name: l, members: [a, b], capacity: 1.5}]",
     "whole number of Mbit/s"),
    ("nodes: [{name: a}, {name: a}]", "duplicate client_id"),
    ("[1, 2", "not YAML"),
])
def test_topology_file_errors(text: str, words: str) -> None:
    with pytest.raises(InvalidTopology) as info:
        loads_topology(text)
    assert words in str(info.value)
