"""Bad input is refused with a message that names the element and its line."""

from __future__ import annotations

import pytest

from slicelab.domain.errors import PayloadTooLarge
from slicelab.rspec import InvalidRSpec, NotOffered, Offer, UnsafeXML, parse_request

HEAD = ('<rspec xmlns="http://www.geni.net/resources/rspec/3" '
        'xmlns:emulab="http://www.protogeni.net/resources/rspec/ext/emulab/1" type="request">\n')


def _req(body: str) -> str:
    return HEAD + body + "\n</rspec>\n"


TWO_NODES = """<node client_id="a"><interface client_id="a:0"/></node>
<node client_id="b"><interface client_id="b:0"/></node>
"""


def test_billion_laughs_refused(offer: Offer) -> None:
    lol = "".join(f'<!ENTITY l{i} "{f"&l{i - 1};" * 10}">' for i in range(1, 10))
    bomb = f'<?xml version="1.0"?>\n<!DOCTYPE r [<!ENTITY l0 "lol">{lol}]>\n<rspec>&l9;</rspec>'
    with pytest.raises(UnsafeXML, match=r"line 2.*DTD"):
        parse_request(bomb, offer=offer)


def test_external_entity_not_read(offer: Offer) -> None:
    xxe = ('<?xml version="1.0"?><!DOCTYPE rspec [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
           + _req('<node client_id="&x;"/>'))
    with pytest.raises(UnsafeXML) as info:
        parse_request(xxe, offer=offer)
    assert "root:" not in str(info.value)


def test_doctype_hidden_in_utf16_is_refused_too(offer: Offer) -> None:
    xxe = ('<?xml version="1.0" encoding="UTF-16"?><!DOCTYPE r [<!ENTITY x SYSTEM '
           '"file:///etc/passwd">]><rspec>&x;</rspec>').encode("utf-16")
    with pytest.raises(UnsafeXML):
        parse_request(xxe, offer=offer)


def test_huge_file_refused(offer: Offer) -> None:
    big = _req("<!--" + "x" * (2 * 1024 * 1024) + "-->")
    with pytest.raises(PayloadTooLarge, match="at most 2097152"):
        parse_request(big, offer=offer)


def test_not_well_formed(offer: Offer) -> None:
    with pytest.raises(InvalidRSpec, match="not well-formed.*line 2"):
        parse_request(_req("<node client_id='a'>"), offer=offer)


@pytest.mark.parametrize(("ns", "words"), [
    ("http://www.protogeni.net/resources/rspec/2", "ProtoGENI RSpec v2"),
    ("http://example.org/rspec", "unknown format"),
])
def test_wrong_namespace_refused_by_name(offer: Offer, ns: str, words: str) -> None:
    with pytest.raises(InvalidRSpec) as info:
        parse_request(f'<rspec xmlns="{ns}" type="request"><node client_id="a"/></rspec>',
                      offer=offer)
    assert words in str(info.value) and ns in str(info.value) and "line 1" in str(info.value)


def test_no_namespace_refused(offer: Offer) -> None:
    with pytest.raises(InvalidRSpec, match="no namespace"):
        parse_request('<rspec type="request"/>', offer=offer)


def test_manifest_is_not_a_request(offer: Offer) -> None:
    with pytest.raises(InvalidRSpec, match="type='manifest'"):
        parse_request(HEAD.replace("request", "manifest") + "</rspec>", offer=offer)


def test_empty_request_refused(offer: Offer) -> None:
    with pytest.raises(InvalidRSpec, match="no nodes"):
        parse_request(_req(""), offer=offer)


def test_unknown_sliver_type(offer: Offer) -> None:
    body = '<node client_id="a">\n<sliver_type name="planetlab-vserver"/></node>'
    with pytest.raises(NotOffered) as info:
        parse_request(_req(body), offer=offer)
    assert "'planetlab-vserver'" in str(info.value) and "line 3" in str(info.value)
    assert "default-vm" in str(info.value)  # says what is offered


def test_unknown_image(offer: Offer) -> None:
    body = ('<node client_id="a"><sliver_type name="default-vm">\n<disk_image name="urn:public'
            'id:IDN+emulab.net+image+emulab-ops:CENTOS7-64-STD"/></sliver_type></node>')
    with pytest.raises(NotOffered) as info:
        parse_request(_req(body), offer=offer)
    assert "CENTOS7-64-STD" in str(info.value) and "line 3" in str(info.value)
    assert "<disk_image" in str(info.value)


def test_image_by_urn_last_component(offer: Offer) -> None:
    body = ('<node client_id="a"><sliver_type name="default-vm"><disk_image name="urn:publicid:'
            'IDN+emulab.net+image+emulab-ops//ubuntu14-64-std"/></sliver_type></node>')
    node = parse_request(_req(body), offer=offer).topology.nodes[0]
    assert node.image == "ubuntu-22.04"


def test_dangling_interface_ref(offer: Offer) -> None:
    body = TWO_NODES + ('<link client_id="l">\n<interface_ref client_id="a:0"/>\n'
                        '<interface_ref client_id="c:0"/></link>')
    with pytest.raises(InvalidRSpec) as info:
        parse_request(_req(body), offer=offer)
    assert "'c:0'" in str(info.value) and "line 6" in str(info.value)
    assert "interface_ref" in str(info.value)


@pytest.mark.parametrize("dupe", ["a", "a:0"])
def test_duplicate_client_id(offer: Offer, dupe: str) -> None:
    body = TWO_NODES + f'<link client_id="{dupe}"><interface_ref client_id="a:0"/></link>'
    with pytest.raises(InvalidRSpec) as info:
        parse_request(_req(body), offer=offer)
    assert f"duplicate client_id '{dupe}'" in str(info.value)
    assert "line 4" in str(info.value) and "first used at line 2" in str(info.value)


@pytest.mark.parametrize("capacity", ["fast", "1G", "-5", "0", "nan", "1e999"])
def test_malformed_capacity(offer: Offer, capacity: str) -> None:
    body = TWO_NODES + ('<link client_id="l"><interface_ref client_id="a:0"/>'
                        '<interface_ref client_id="b:0"/>\n'
                        f'<property source_id="a:0" dest_id="b:0" capacity="{capacity}"/></link>')
    with pytest.raises(InvalidRSpec) as info:
        parse_request(_req(body), offer=offer)
    assert "capacity" in str(info.value) and "<property>" in str(info.value)
    assert "line 5" in str(info.value)


def test_capacity_latency_loss(offer: Offer) -> None:
    body = TWO_NODES + ('<link client_id="l"><interface_ref client_id="a:0"/>'
                        '<interface_ref client_id="b:0"/><property source_id="a:0" '
                        'dest_id="b:0" capacity="100000" latency="20" packet_loss="0.01"/>'
                        "</link>")
    parsed = parse_request(_req(body), offer=offer)
    link = parsed.topology.links[0]
    assert (link.capacity_mbps, link.latency_ms, link.packet_loss) == (100, 20.0, 0.01)
    assert any("latency 20 requested but not enforced" in n for n in parsed.notes)
    assert any("packet loss 0.01" in n for n in parsed.notes)


def test_malformed_xen_numbers(offer: Offer) -> None:
    body = ('<node client_id="a"><sliver_type name="emulab-xen">\n'
            '<emulab:xen cores="two"/></sliver_type></node>')
    with pytest.raises(InvalidRSpec, match=r"emulab:xen.*line 3.*cores='two'"):
        parse_request(_req(body), offer=offer)


def test_exclusive_refused_when_not_offered() -> None:
    from rspec_offers import lab_offer
    with pytest.raises(NotOffered, match=r"node 'a'.*exclusive"):
        parse_request(_req('<node client_id="a" exclusive="true"/>'),
                      offer=lab_offer(exclusive=False))


def test_ipv6_and_gre_refused(offer: Offer) -> None:
    v6 = '<node client_id="a"><interface client_id="a:0"><ip address="fe80::1" type="ipv6"/>'
    with pytest.raises(NotOffered, match="'ipv6'"):
        parse_request(_req(v6 + "</interface></node>"), offer=offer)
    gre = TWO_NODES + ('<link client_id="l"><interface_ref client_id="a:0"/><interface_ref '
                       'client_id="b:0"/><link_type name="gre-tunnel"/></link>')
    with pytest.raises(NotOffered, match="gre-tunnel"):
        parse_request(_req(gre), offer=offer)


def test_address_forms(offer: Offer) -> None:
    body = ('<node client_id="a"><interface client_id="a:0"><ip address=" 10.1.1.1 " '
            'netmask="255.255.0.0"/></interface><interface client_id="a:1"><ip '
            'address="10.2.2.2/30"/></interface><interface client_id="a:2"><ip address='
            '"10.3.3.3"/></interface></node>')
    parsed = parse_request(_req(body), offer=offer)
    assert [i.ipv4 for i in parsed.topology.interfaces] == \
        ["10.1.1.1/16", "10.2.2.2/30", "10.3.3.3/24"]
    assert any("white space" in n for n in parsed.notes)
    assert any("/24 assumed" in n for n in parsed.notes)


def test_bad_netmask(offer: Offer) -> None:
    body = ('<node client_id="a"><interface client_id="a:0"><ip address="10.0.0.1" '
            'netmask="255.0.255.0"/>')
    with pytest.raises(InvalidRSpec, match=r"<ip>.*netmask"):
        parse_request(_req(body + "</interface></node>"), offer=offer)


def test_schema_error_is_refused(offer: Offer) -> None:
    with pytest.raises(InvalidRSpec, match=r"line 2.*schema"):
        parse_request(_req('<node client_id="a"><bogus/></node>'), offer=offer)


def test_bound_to_unknown_component() -> None:
    from rspec_offers import AGG, lab_offer
    base = lab_offer()
    offer = Offer(aggregate_urn=AGG, sliver_types=base.sliver_types,
                  node_urns=("urn:publicid:IDN+lab+node+h1",))
    body = ('<node client_id="a" component_id="urn:publicid:IDN+lab+node+h9" '
            f'component_manager_id="{AGG}"/>')
    with pytest.raises(NotOffered, match="h9"):
        parse_request(_req(body), offer=offer)
    ok = parse_request(_req(body.replace("h9", "h1")), offer=offer).topology.nodes[0]
    assert ok.component_id == "urn:publicid:IDN+lab+node+h1"
    assert ok.component_manager_id == AGG
