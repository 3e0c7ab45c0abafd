"""First-fit placement of a topology's nodes onto physical nodes.

Each requested node goes, in request order, to the first physical node (in the order given)
that is in boot state ``boot``, matches its ``component_id`` (a node name) and ``site`` if
named, and still has room after what is in use and what this request already placed. An
``exclusive`` request needs a node with nothing else on it. When a request fits nowhere,
:class:`InsufficientResources` names it and says, per candidate node, why not.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from .errors import InsufficientResources
from .nodes import Node
from .resources import Resources
from .topology import NodeRequest, Topology

__all__ = ["first_fit"]


def first_fit(topology: Topology, nodes: Sequence[Node],
              used: Mapping[str, Resources]) -> dict[str, str]:
    """Map every node ``client_id`` of ``topology`` to the ``id`` of a physical node."""
    load = {n.id: used.get(n.id, Resources()) for n in nodes}
    exclusive: set[str] = set()
    placed: dict[str, str] = {}
    for request in topology.nodes:
        reasons: list[str] = []
        for node in nodes:
            why = _why_not(request, node, load[node.id], exclusive)
            if why is None:
                placed[request.client_id] = node.id
                load[node.id] = load[node.id] + _demand(request)
                if request.exclusive:
                    exclusive.add(node.id)
                break
            reasons.append(f"{node.name}: {why}")
        else:
            raise InsufficientResources(_message(request, reasons), field="nodes")
    return placed


def _demand(request: NodeRequest) -> Resources:
    r = request.resources
    return Resources(r.cpu_milli, r.memory_mib, r.disk_gib, 0, r.devices)


def _why_not(request: NodeRequest, node: Node, load: Resources,
             exclusive: set[str]) -> str | None:
    if request.component_id is not None and request.component_id not in (node.name, str(node.urn)):
        return f"not the requested node {request.component_id}"
    if request.site is not None and request.site != node.site:
        return f"at site {node.site}, not {request.site}"
    if not node.accepts_slivers:
        return f"boot state is {node.boot_state.value}"
    if node.id in exclusive:
        return "held exclusively by another node of this request"
    if request.exclusive and not load.is_zero():
        return "exclusive use requested but the node is in use"
    missing = _demand(request).shortfall(node.capacity() - load)
    return "; ".join(missing) if missing else None


def _message(request: NodeRequest, reasons: list[str]) -> str:
    head = f"node {request.client_id!r} ({request.resources.describe()}) fits on no node"
    return f"{head}: {' | '.join(reasons)}" if reasons else f"{head}: there are no nodes"
