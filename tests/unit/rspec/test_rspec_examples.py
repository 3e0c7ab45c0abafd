"""Every real-world example request either parses to the expected topology or is refused
with a message naming what this aggregate does not offer."""

from __future__ import annotations

from pathlib import Path

import pytest
from rspec_offers import AGG, lab_offer

from slicelab.rspec import ForeignNodes, InvalidRSpec, NotOffered, Offer, parse_request

EXAMPLES = "examples"

# file -> (nodes, links, capacities in Mbit/s), parsed with an offer that treats the
# example's component managers as this aggregate
PARSES = {
    "geni-tools__amapi2-request-minimal.xml": (1, 0, []),
    "geni-tools__gib-four-nodes.xml": (4, 5, [None] * 5),
    "geni-tools__gib-install-example.xml": (2, 1, [None]),
    "geni-tools__gib-islands.xml": (4, 1, [None]),
    "geni-tools__gib-three-nodes-lan.xml": (3, 1, [None]),
    "geni-tools__gib-two-nodes-iperf.xml": (2, 1, [None]),
    "gram__pi-rpi1and2.xml": (2, 0, []),
    "gram__three-nodes-multi-am.xml": (3, 2, [None, None]),
    "geni-tools__stitch-request-pg-ig-utah-2links.xml": (2, 2, [None, None]),
    "geni-tools__stitch-request-pg-ig-utah.xml": (2, 1, [None]),
    "geni-tools__stitch-request-ky-to-ig-gpo.xml": (2, 1, [None]),
    "emulab-portal__utahddc-utahig-stitch.xml": (2, 1, [10]),
    "emulab-portal__utahcloud-utahms-stitch.xml": (2, 1, [10]),
    "felix__crm-request-xen.xml": (1, 0, []),
}

# file -> words the refusal must contain (what the offer lacks), with the permissive offer
REFUSED = {
    "felix__openflow-request.xml": ["openflow:sliver", "line 13", "OpenFlow"],
    "gram__controller-4-node-diamond.xml": ["openflow:controller", "line 53", "OpenFlow"],
    "felix__tnrm-request-sharedvlan.xml": ["sharedvlan:link_shared_vlan", "line 16",
                                           "shared VLANs"],
    "geni-tools__stitch-request-ig-utah-eg-gpo.xml": ["m1.small", "line 15"],
}

ALL_CMS = (
    "urn:publicid:IDN+emulab.net+authority+cm",
    "urn:publicid:IDN+instageni.gpolab.bbn.com+authority+cm",
    "urn:publicid:IDN+utah.geniracks.net+authority+cm",
    "urn:publicid:IDN+uky.emulab.net+authority+cm",
    "urn:publicid:IDN+utahddc.geniracks.net+authority+cm",
    "urn:publicid:IDN+utah.cloudlab.us+authority+cm",
    "urn:publicid:IDN+ocf:i2cat:vtam+authority+cm",
    "urn:publicid:IDN+NSI+authority+tnrm",
    "urn:publicid:IDN+exogeni.net:bbnvmsite+authority+am",
)


def _everywhere() -> Offer:
    """The permissive offer, minus m1.small, plus the Xen example's image."""
    base = lab_offer(aliases=ALL_CMS)
    from slicelab.rspec import ImageOffer
    images = (*base.images, ImageOffer("debian-6", aliases=("DEB60_64-VLAN",)))
    types = tuple(t for t in base.sliver_types if t.name != "m1.small")
    return Offer(aggregate_urn=AGG, sliver_types=types, images=images, exclusive=True,
                 aliases=ALL_CMS)


def test_every_example_is_covered(shared: Path) -> None:
    names = {p.name for p in (shared / EXAMPLES).glob("*.xml")}
    assert names == set(PARSES) | set(REFUSED)


@pytest.mark.parametrize("name", sorted(PARSES))
def test_example_parses(shared: Path, name: str) -> None:
    nodes, links, capacities = PARSES[name]
    parsed = parse_request((shared / EXAMPLES / name).read_bytes(), offer=_everywhere())
    topo = parsed.topology
    assert (len(topo.nodes), len(topo.links)) == (nodes, links)
    assert [lk.capacity_mbps for lk in topo.links] == capacities
    assert parsed.ignored_nodes == ()


@pytest.mark.parametrize("name", sorted(REFUSED))
def test_example_refused_by_name(shared: Path, name: str) -> None:
    with pytest.raises(NotOffered) as info:
        parse_request((shared / EXAMPLES / name).read_bytes(), offer=_everywhere())
    for word in REFUSED[name]:
        assert word in str(info.value)


def test_xen_extension_sets_resources(shared: Path) -> None:
    data = (shared / EXAMPLES / "felix__crm-request-xen.xml").read_bytes()
    node = parse_request(data, offer=_everywhere()).topology.nodes[0]
    assert (node.resources.cores, node.resources.memory_mib, node.resources.disk_gib) == \
        (3, 1024, 10)
    assert node.exclusive and node.image == "debian-6"
    assert node.component_id == "urn:publicid:IDN+ocf:i2cat:vtam+node+Verdaguer"


def test_services_and_images_of_gib_example(shared: Path, offer: Offer) -> None:
    data = (shared / EXAMPLES / "geni-tools__gib-two-nodes-iperf.xml").read_bytes()
    parsed = parse_request(data, offer=offer)
    left = parsed.topology.node("left")
    assert left.image == "ubuntu-22.04" and left.exclusive
    assert left.installs[0].path == "/local"
    assert left.executes[0].command == "/local/iperf-script.sh"
    assert any("UBUNTU10-STD" in n and "ubuntu-22.04" in n for n in parsed.notes)


def test_addresses_from_netmask(shared: Path) -> None:
    data = (shared / EXAMPLES / "geni-tools__stitch-request-pg-ig-utah.xml").read_bytes()
    topo = parse_request(data, offer=_everywhere()).topology
    assert topo.interface("pg-utah:if1").ipv4 == "10.20.2.1/24"


def test_pi_tag_deviation_accepted_with_note(shared: Path, offer: Offer) -> None:
    parsed = parse_request((shared / EXAMPLES / "gram__pi-rpi1and2.xml").read_bytes(),
                           offer=offer)
    assert [n.client_id for n in parsed.topology.nodes] == ["rpi-1", "rpi-2"]
    assert any("pi_tag" in n for n in parsed.notes)


def test_xml_11_and_asymmetric_capacity(shared: Path) -> None:
    text = (shared / EXAMPLES / "felix__tnrm-request-sharedvlan.xml").read_text()
    assert 'version="1.1"' in text
    data = text.replace("sharedvlan:link_shared_vlan", "stitch:note")
    with pytest.raises(InvalidRSpec) as info:  # its second property names no interface
        parse_request(data, offer=_everywhere())
    assert "dest_id" in str(info.value) and "line 38" in str(info.value)
    data = data.replace("urn:publicid:tn-network1+urn:ogf:network:aist:network1:stp1",
                        "urn:publicid:tn:aist:network1+urn:ogf:network:aist:network1:stp1")
    parsed = parse_request(data, offer=_everywhere())
    (link,) = parsed.topology.links
    assert link.is_lan and link.capacity_mbps == 1  # 500 kbps, the smaller, rounded up
    assert "XML 1.1 declaration read as XML 1.0" in parsed.notes
    assert any("differ by direction" in n for n in parsed.notes)
    assert any("rounded up" in n for n in parsed.notes)


def test_stitch_extension_ignored_with_note(shared: Path) -> None:
    data = (shared / EXAMPLES / "emulab-portal__utahcloud-utahms-stitch.xml").read_bytes()
    parsed = parse_request(data, offer=_everywhere())
    assert any("stitch:stitching" in n for n in parsed.notes)


def test_multi_aggregate_other_nodes_left_out(shared: Path) -> None:
    data = (shared / EXAMPLES / "gram__three-nodes-multi-am.xml").read_bytes()
    offer = Offer(aggregate_urn="urn:publicid:IDN+instageni.gpolab.bbn.com+authority+cm",
                  sliver_types=lab_offer().sliver_types, images=lab_offer().images)
    with pytest.raises(NotOffered) as info:
        parse_request(data, offer=offer)
    # link0 joins 'left' (emulab.net) with 'middle' (here): stitching is not offered
    assert "link0" in str(info.value) and "emulab.net" in str(info.value)
    assert "line 34" in str(info.value)


def test_wholly_foreign_link_left_out(shared: Path) -> None:
    data = (shared / EXAMPLES / "gram__three-nodes-multi-am.xml").read_bytes()
    offer = Offer(aggregate_urn="urn:publicid:IDN+emulab.net+authority+cm",
                  sliver_types=lab_offer().sliver_types, images=lab_offer().images)
    data = data.replace(b'<interface_ref client_id="middle:if0"/>', b"").replace(
        b'<property source_id="left:if0" dest_id="middle:if0"/>', b"").replace(
        b'<property source_id="middle:if0" dest_id="left:if0"/>', b"")
    with pytest.raises(Exception, match="at least two interface_refs"):
        parse_request(data, offer=offer)


def test_foreign_nodes_ignored_then_refused_by_policy(shared: Path) -> None:
    data = (shared / EXAMPLES / "gram__three-nodes-multi-am.xml").read_bytes()
    data = data.replace(b'<link client_id="link0">', b'<link client_id="link0x">', 1)
    here = "urn:publicid:IDN+emulab.net+authority+cm"
    # keep only link1 (wholly at instageni): drop link0 by making both ends foreign
    data = data.replace(b'component_manager_id="urn:publicid:IDN+emulab.net+authority+cm"',
                        b'component_manager_id="urn:publicid:IDN+instageni.gpolab.bbn.com'
                        b'+authority+cm"')
    data = data.replace(b"<node client_id=\"left\"", b"<node client_id=\"solo\" "
                        b"component_manager_id=\"" + here.encode() + b"\"/><node "
                        b"client_id=\"left\"", 1)
    offer = Offer(aggregate_urn=here, sliver_types=lab_offer().sliver_types,
                  images=lab_offer().images)
    parsed = parse_request(data, offer=offer)
    assert [n.client_id for n in parsed.topology.nodes] == ["solo"]
    assert set(parsed.ignored_nodes) == {"left", "middle", "right"}
    assert set(parsed.ignored_links) == {"link0x", "link1"}
    strict = Offer(aggregate_urn=here, sliver_types=offer.sliver_types, images=offer.images,
                   foreign_nodes=ForeignNodes.REFUSE)
    with pytest.raises(NotOffered, match="another aggregate"):
        parse_request(data, offer=strict)


def test_shared_only_offer_refuses_raw_pc(shared: Path) -> None:
    data = (shared / EXAMPLES / "geni-tools__gib-three-nodes-lan.xml").read_bytes()
    with pytest.raises(NotOffered) as info:
        parse_request(data, offer=lab_offer(exclusive=False))
    assert "raw-pc" in str(info.value) and "line 9" in str(info.value)


def test_no_node_for_this_aggregate(shared: Path) -> None:
    data = (shared / EXAMPLES / "felix__crm-request-xen.xml").read_bytes()
    with pytest.raises(NotOffered) as info:
        parse_request(data, offer=lab_offer())
    assert "ocf:i2cat:vtam" in str(info.value) and AGG in str(info.value)
