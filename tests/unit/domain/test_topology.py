import pytest

from slicelab.domain.errors import InvalidTopology
from slicelab.domain.resources import Resources
from slicelab.domain.topology import InterfaceRequest, LinkRequest, NodeRequest, Topology


def line(n: int = 3, capacity: int | None = 100) -> Topology:
    nodes = tuple(NodeRequest(f"n{i}", Resources.of(cores=1, memory_mib=256)) for i in range(n))
    ifaces, links = [], []
    for i in range(n - 1):
        a, b = f"n{i}:if{i}r", f"n{i + 1}:if{i}l"
        ifaces += [InterfaceRequest(a, f"n{i}", f"10.0.{i}.1/24"),
                   InterfaceRequest(b, f"n{i + 1}", f"10.0.{i}.2/24")]
        links.append(LinkRequest(f"l{i}", (a, b), capacity_mbps=capacity))
    return Topology(nodes, tuple(ifaces), tuple(links))


def test_a_line_is_valid_and_adds_up() -> None:
    topo = line(4)
    assert len(topo.links) == 3
    assert topo.link_nodes(topo.links[0]) == ("n0", "n1")
    assert topo.total_resources() == Resources.of(cores=4, memory_mib=1024)
    assert not topo.links[0].is_lan


def test_duplicate_client_ids_are_named() -> None:
    with pytest.raises(InvalidTopology, match="duplicate client_id: a"):
        Topology((NodeRequest("a"), NodeRequest("a")))


def test_an_interface_on_an_unknown_node_is_refused() -> None:
    with pytest.raises(InvalidTopology, match="unknown node 'ghost'"):
        Topology((NodeRequest("a"),), (InterfaceRequest("a:0", "ghost"),))


def test_a_dangling_interface_reference_is_refused() -> None:
    nodes = (NodeRequest("a"), NodeRequest("b"))
    ifaces = (InterfaceRequest("a:0", "a"), InterfaceRequest("b:0", "b"))
    with pytest.raises(InvalidTopology, match="unknown interface 'c:0'"):
        Topology(nodes, ifaces, (LinkRequest("l", ("a:0", "c:0")),))


def test_a_link_needs_two_distinct_interfaces_and_positive_capacity() -> None:
    nodes = (NodeRequest("a"), NodeRequest("b"))
    ifaces = (InterfaceRequest("a:0", "a"), InterfaceRequest("b:0", "b"))
    with pytest.raises(InvalidTopology, match="at least two"):
        Topology(nodes, ifaces, (LinkRequest("l", ("a:0", "a:0")),))
    with pytest.raises(InvalidTopology, match="capacity must be positive"):
        Topology(nodes, ifaces, (LinkRequest("l", ("a:0", "b:0"), capacity_mbps=0),))


def test_an_interface_may_sit_on_one_link_only() -> None:
    nodes = (NodeRequest("a"), NodeRequest("b"), NodeRequest("c"))
    ifaces = (InterfaceRequest("a:0", "a"), InterfaceRequest("b:0", "b"),
              InterfaceRequest("c:0", "c"))
    links = (LinkRequest("l1", ("a:0", "b:0")), LinkRequest("l2", ("a:0", "c:0")))
    with pytest.raises(InvalidTopology, match="more than one link"):
        Topology(nodes, ifaces, links)


def test_a_bad_address_names_the_interface() -> None:
    with pytest.raises(InvalidTopology, match="interface 'a:0' address '10.0.0.300/24'"):
        Topology((NodeRequest("a"),), (InterfaceRequest("a:0", "a", "10.0.0.300/24"),))


def test_negative_resources_are_refused() -> None:
    with pytest.raises(InvalidTopology.__mro__[1]):
        Topology((NodeRequest("a", Resources(cpu_milli=-1)),))
