"""GENI RSpec v3 <-> slicelab: requests in, manifests and advertisements out, JSON alike.

* :func:`parse_request` — a request RSpec, checked against an :class:`Offer`, becomes a
  :class:`~slicelab.domain.topology.Topology` plus notes for the user;
* :func:`build_request` — the reverse (for the SDK and for tests);
* :func:`build_manifest` — request topology + :class:`Allocation` -> manifest RSpec;
* :func:`build_advertisement` — :class:`Inventory` -> advertisement RSpec;
* :func:`validate_file` / :func:`render_report` — ``slicelab rspec validate FILE``;
* :func:`topology_to_json` / :func:`topology_from_json` / :func:`load_topology_file` — the
  same model as JSON, and the hand-written topology file (YAML or JSON).
"""

from __future__ import annotations

from .advertisement import (
    Inventory,
    InventoryInterface,
    InventoryLink,
    InventoryNode,
    build_advertisement,
)
from .errors import InvalidRSpec, NotOffered, UnsafeXML
from .manifest import (
    Allocation,
    InterfaceAllocation,
    LinkAllocation,
    Login,
    NodeAllocation,
    build_manifest,
)
from .offer import ForeignNodes, ImageOffer, Offer, SliverKind, SliverTypeOffer
from .parse import ParsedRequest, parse_request
from .request import build_request
from .topology_file import (
    load_topology_file,
    loads_topology,
    topology_from_json,
    topology_to_json,
)
from .validate import ValidationReport, render_report, validate_bytes, validate_file

__all__ = [
    "Allocation",
    "ForeignNodes",
    "ImageOffer",
    "InterfaceAllocation",
    "InvalidRSpec",
    "Inventory",
    "InventoryInterface",
    "InventoryLink",
    "InventoryNode",
    "LinkAllocation",
    "Login",
    "NodeAllocation",
    "NotOffered",
    "Offer",
    "ParsedRequest",
    "SliverKind",
    "SliverTypeOffer",
    "UnsafeXML",
    "ValidationReport",
    "build_advertisement",
    "build_manifest",
    "build_request",
    "load_topology_file",
    "loads_topology",
    "parse_request",
    "render_report",
    "topology_from_json",
    "topology_to_json",
    "validate_bytes",
    "validate_file",
]
