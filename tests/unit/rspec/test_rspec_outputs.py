"""Manifests, advertisements, validation reports."""

from __future__ import annotations

from pathlib import Path

from lxml import etree
from rspec_offers import AGG

from slicelab.domain.resources import Resources
from slicelab.rspec import (
    Allocation,
    InterfaceAllocation,
    Inventory,
    InventoryInterface,
    InventoryLink,
    InventoryNode,
    LinkAllocation,
    Login,
    NodeAllocation,
    Offer,
    build_advertisement,
    build_manifest,
    parse_request,
    render_report,
    validate_bytes,
    validate_file,
)
from slicelab.rspec.document import load_document
from slicelab.rspec.schema import SchemaKind, schema_issues

NS = "{http://www.geni.net/resources/rspec/3}"


def _allocate(topology) -> Allocation:  # type: ignore[no-untyped-def]
    nodes = []
    for i, node in enumerate(topology.nodes):
        ifaces = tuple(InterfaceAllocation(f.client_id, f"urn:publicid:IDN+lab+sliver+i{j}",
                                           f"02:00:00:00:{i:02x}:{j:02x}", f"10.9.{i}.{j + 1}/24")
                       for j, f in enumerate(topology.interfaces) if f.node == node.client_id)
        nodes.append(NodeAllocation(node.client_id, f"urn:publicid:IDN+lab+sliver+n{i}",
                                    "urn:publicid:IDN+lab+node+h1", f"{node.client_id}.s.p.lab",
                                    logins=(Login("alice", "h1.lab", 30000 + i),),
                                    interfaces=ifaces))
    links = tuple(LinkAllocation(lk.client_id, f"urn:publicid:IDN+lab+sliver+l{i}", vni=4000 + i)
                  for i, lk in enumerate(topology.links))
    return Allocation(AGG, tuple(nodes), links, notes=("placed on 1 host",))


def test_manifest_round_trip_and_schema(shared: Path, offer: Offer) -> None:
    request = (shared / "examples" / "geni-tools__gib-four-nodes.xml").read_bytes()
    topo = parse_request(request, offer=offer).topology
    data = build_manifest(topo, _allocate(topo))
    root = load_document(data)
    assert root.get("type") == "manifest"
    assert schema_issues(root, kind=SchemaKind.MANIFEST) == []
    req_ids = {e.get("client_id") for e in etree.fromstring(request).iter(f"{NS}node")}
    assert {e.get("client_id") for e in root.iter(f"{NS}node")} == req_ids
    left = root.find(f"{NS}node[@client_id='left']")
    assert left.get("sliver_id") == "urn:publicid:IDN+lab+sliver+n0"
    login = left.find(f"{NS}services/{NS}login")
    assert (login.get("authentication"), login.get("port"), login.get("username")) == \
        ("ssh-keys", "30000", "alice")
    assert left.find(f"{NS}host").get("name") == "left.s.p.lab"
    iface = left.find(f"{NS}interface[@client_id='left:if0']")
    assert iface.get("mac_address") == "02:00:00:00:00:00"
    assert iface.find(f"{NS}ip").get("netmask") == "255.255.255.0"
    link = root.find(f"{NS}link[@client_id='top-to-left']")
    assert link.get("vlantag") == "4000" and link.get("sliver_id")
    assert "placed on 1 host" in data.decode()


def test_manifest_schema_catches_errors(offer: Offer) -> None:
    data = build_manifest(parse_request(
        '<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">'
        '<node client_id="a"/></rspec>', offer=offer).topology, Allocation(AGG))
    broken = data.replace(b' client_id="a"', b"")
    issues = schema_issues(load_document(broken), kind=SchemaKind.MANIFEST)
    assert any("client_id" in i.message for i in issues)


def test_manifest_notes_latency(offer: Offer) -> None:
    body = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">'
            '<node client_id="a"><interface client_id="a:0"/></node><node client_id="b">'
            '<interface client_id="b:0"/></node><link client_id="l"><interface_ref client_id'
            '="a:0"/><interface_ref client_id="b:0"/><property source_id="a:0" dest_id="b:0" '
            'latency="5"/></link></rspec>')
    topo = parse_request(body, offer=offer).topology
    data = build_manifest(topo, _allocate(topo))
    assert b"latency 5 ms not enforced" in data
    assert schema_issues(load_document(data), kind=SchemaKind.MANIFEST) == []


def test_advertisement_lists_nodes(offer: Offer) -> None:
    inv = Inventory(AGG, nodes=tuple(
        InventoryNode(f"urn:publicid:IDN+lab+node+h{i}", f"h{i}", site="lab", hardware_types=(
            "pc",), capacity=Resources.of(cores=8, memory_mib=16384, disk_gib=100),
            free=Resources.of(cores=6), images=("ubuntu-22.04",), available=i != 2,
            interfaces=(InventoryInterface(f"urn:publicid:IDN+lab+interface+h{i}:eth1", "eth1",
                                           "experimental"),))
        for i in range(3)),
        links=(InventoryLink("urn:publicid:IDN+lab+link+h0h1", "h0h1", (
            "urn:publicid:IDN+lab+interface+h0:eth1", "urn:publicid:IDN+lab+interface+h1:eth1"),
            10000),))
    data = build_advertisement(inv)
    root = load_document(data)
    assert schema_issues(root, kind=SchemaKind.ADVERTISEMENT) == []
    nodes = root.findall(f"{NS}node")
    assert [n.get("component_name") for n in nodes] == ["h0", "h1", "h2"]
    assert [n.find(f"{NS}available").get("now") for n in nodes] == ["true", "true", "false"]
    assert root.find(f"{NS}link/{NS}property").get("capacity") == "10000000"
    assert b'cores="8"' in data and b'memory_mib="16384"' in data


def test_validate_file_reports(shared: Path, offer: Offer, tmp_path: Path) -> None:
    good = validate_file(shared / "examples" / "geni-tools__gib-islands.xml", offer=offer)
    assert good.ok and "4 node(s), 1 link(s)" in good.summary
    bad = tmp_path / "bad.xml"
    bad.write_text('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">\n'
                   '<node/>\n<node client_id="x"><wrong/></node></rspec>')
    report = validate_file(bad, offer=offer)
    assert not report.ok and [p.line for p in report.errors] == [2, 3]
    text = render_report(report)
    assert "INVALID request" in text and "line 2" in text and "client_id" in text
    ad = validate_file(shared / "ad" / "felix__serm-adv.xml", offer=offer)
    assert ad.ok and ad.kind == "advertisement" and any("ad-common" in n for n in ad.notes)
    man = validate_file(shared / "manifest" / "felix__crm-manifest.xml", offer=offer)
    assert man.ok and man.kind == "manifest"
    assert not validate_bytes(b"<rspec", offer=offer).ok
