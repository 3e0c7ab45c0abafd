"""First-fit placement."""

from __future__ import annotations

import pytest

from slicelab.domain.errors import InsufficientResources
from slicelab.domain.firstfit import first_fit
from slicelab.domain.nodes import BootState, Inventory, Node, node_urn
from slicelab.domain.resources import Resources
from slicelab.domain.topology import NodeRequest, Topology


def _node(name: str, *, cores: float = 2, memory: int = 1024,
          state: BootState = BootState.BOOT, site: str = "lab") -> Node:
    return Node(id=f"n-{name}", name=name, site=site, urn=node_urn("sl.test", name),
                boot_state=state, inventory=Inventory(cores=cores, memory_mib=memory, disk_gib=10))


def _want(cid: str, cores: float = 1, memory: int = 256, **kw: object) -> NodeRequest:
    return NodeRequest(cid, Resources.of(cores=cores, memory_mib=memory, disk_gib=1), **kw)  # type: ignore[arg-type]


def test_fills_the_first_node_before_the_next() -> None:
    topo = Topology(nodes=(_want("a"), _want("b"), _want("c")))
    got = first_fit(topo, [_node("h1"), _node("h2")], {})
    assert got == {"a": "n-h1", "b": "n-h1", "c": "n-h2"}


def test_counts_what_is_in_use_and_skips_nodes_not_in_boot() -> None:
    nodes = [_node("h1", state=BootState.DEBUG), _node("h2"), _node("h3")]
    used = {"n-h2": Resources.of(cores=1.5)}
    assert first_fit(Topology(nodes=(_want("a"),)), nodes, used) == {"a": "n-h3"}


def test_component_id_and_site_pin_a_node() -> None:
    nodes = [_node("h1"), _node("h2", site="far")]
    topo = Topology(nodes=(_want("a", component_id="h2"), _want("b", site="far")))
    assert first_fit(topo, nodes, {}) == {"a": "n-h2", "b": "n-h2"}


def test_exclusive_takes_a_whole_node() -> None:
    topo = Topology(nodes=(_want("a", exclusive=True), _want("b")))
    assert first_fit(topo, [_node("h1"), _node("h2")], {}) == {"a": "n-h1", "b": "n-h2"}


def test_failure_names_the_request_and_why_each_node_refused() -> None:
    nodes = [_node("h1", cores=1), _node("h2", state=BootState.DISABLED)]
    with pytest.raises(InsufficientResources) as caught:
        first_fit(Topology(nodes=(_want("big", cores=4),)), nodes, {})
    text = str(caught.value)
    assert "'big'" in text and "h1: cores: needs 4" in text and "h2: boot state is disabled" in text


def test_no_nodes_at_all() -> None:
    with pytest.raises(InsufficientResources, match="there are no nodes"):
        first_fit(Topology(nodes=(_want("a"),)), [], {})
