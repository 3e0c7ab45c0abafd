"""Every request RSpec example either allocates (with a manifest) on an inventory big enough,
or is refused with a message that names what is not offered.

Most examples bind their nodes to other aggregates; for those the aggregate is set up as that
aggregate would be: its component manager URNs are aliases of ours, and it has a node for
every ``component_id`` the request names.
"""

from __future__ import annotations

import os
import re
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from lxml import etree
from test_lease_world import World

from slicelab.domain.errors import Conflict, InvalidTopology, SlicelabError
from slicelab.domain.nodes import BootState, Inventory, Node
from slicelab.domain.urn import URN
from slicelab.rspec import ImageOffer, NotOffered, Offer
from slicelab.services.allocation import aggregate_offer, allocate
from slicelab.services.leases import LeaseWindow
from slicelab.store.uow import UnitOfWorkFactory

EXAMPLES = sorted(Path(os.environ["SLICELAB_SHARED"], "rspec/examples").glob("*.xml"))
# What each refused example asks for that cannot be given (checked in the message).
REFUSED: dict[str, tuple[type[SlicelabError], str]] = {
    "felix__openflow-request.xml": (NotOffered, "OpenFlow"),
    "felix__tnrm-request-sharedvlan.xml": (NotOffered, "shared VLANs"),
    "gram__controller-4-node-diamond.xml": (NotOffered, "OpenFlow"),
    # client_ids become host names, so they must be DNS labels
    "felix__crm-request-xen.xml": (InvalidTopology, "node client_id 'Verdaguer' must be a DNS"),
    # two links of one slice on one subnet: refused naming the link and the subnet
    "geni-tools__stitch-request-pg-ig-utah-2links.xml":
        (Conflict, "link 'link-pg-utah-ig-utah2': subnet 10.20.2.0/24 overlaps"),
}


def _asked(path: Path) -> tuple[set[str], set[str], set[str]]:
    """The component managers, bound nodes and disk images the request names."""
    text = path.read_text()
    managers = set(re.findall(r'component_manager_id="([^"]+)"', text))
    nodes = set(re.findall(r'component_id="(urn:publicid:IDN\+[^"]+\+node\+[^"]+)"', text))
    images = set(re.findall(r'<(?:\w+:)?disk_image[^>]*\bname="([^"]+)"', text))
    return managers, nodes, images


def _installs(path: Path) -> set[str]:
    """The files the request installs (registered at the aggregate for the test)."""
    return set(re.findall(r'<(?:\w+:)?install[^>]*\burl="([^"]+)"', path.read_text()))


def _add_nodes(world: World, urns: set[str]) -> None:
    now = datetime.now(UTC)
    with world.uow_factory() as uow:
        for i, text in enumerate(sorted(urns)):
            urn = URN.parse(text)
            name = f"x{i}-{re.sub(r'[^a-z0-9-]', '-', urn.name.lower())}"[:63].strip("-")
            inventory = Inventory(cores=16, memory_mib=65536, disk_gib=500,
                                  host_ip=f"172.31.8.{i + 2}")
            node = Node(id=f"n-e{i:03x}", name=name, site="lab", urn=urn,
                        boot_state=BootState.BOOT, inventory=inventory)
            uow.aggregate.nodes.add(node, sealed_key="unused", created=now)
        uow.commit()


def _offer(world: World, managers: set[str], images: set[str]) -> Offer:
    offer = aggregate_offer(world.ctx, [])
    return replace(offer, aliases=tuple(sorted(managers)),
                   images=offer.images + tuple(ImageOffer(n, urn=n if n.startswith("urn:")
                                                          else None) for n in sorted(images)))


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.name for p in EXAMPLES])
def test_each_example_allocates_or_is_refused_naming_what(uow_factory: UnitOfWorkFactory,
                                                          path: Path) -> None:
    world = World(uow_factory, hosts=8, cores=16, memory_mib=65536, slices=1)
    managers, nodes, images = _asked(path)
    _add_nodes(world, nodes)
    offer = _offer(world, managers, images)
    files = _installs(path)
    world.ctx = replace(world.ctx, resolve_image=lambda n: "f" * 64 if n in files else None)
    refused = REFUSED.get(path.name)
    with world.uow_factory() as uow:
        if refused is not None:
            with pytest.raises(refused[0], match=re.escape(refused[1])):
                allocate(uow, world.ctx, world.caller, "p", "s0", path.read_bytes(),
                         when=LeaseWindow(duration=timedelta(hours=1)), offer=offer)
            return
        done = allocate(uow, world.ctx, world.caller, "p", "s0", path.read_bytes(),
                        when=LeaseWindow(duration=timedelta(hours=1)), offer=offer)
    assert done.slivers and done.manifest is not None
    manifest = etree.fromstring(done.manifest)
    slivered = {n.get("client_id") for n in manifest.iter("{*}node") if n.get("sliver_id")}
    assert slivered == {r.client_id for r in done.slivers}
    world.assert_never_oversubscribed()


def test_a_request_for_another_aggregate_says_so(uow_factory: UnitOfWorkFactory) -> None:
    world = World(uow_factory, hosts=1, slices=1)
    path = Path(os.environ["SLICELAB_SHARED"], "rspec/examples/geni-tools__gib-four-nodes.xml")
    with world.uow_factory() as uow, pytest.raises(NotOffered, match="not for this aggregate|"
                                                   "no node in this request is for"):
        allocate(uow, world.ctx, world.caller, "p", "s0", path.read_bytes(),
                 when=LeaseWindow(duration=timedelta(hours=1)),
                 offer=aggregate_offer(world.ctx, []))
