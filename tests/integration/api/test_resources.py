"""The resources view, the advertisement and RSpec validation over HTTP, on both databases."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from lxml import etree
from sqlalchemy import insert, select

from slicelab.domain.calendar import Booking, Window
from slicelab.domain.nodes import BootState, Inventory, Node, Site, node_urn, site_urn
from slicelab.domain.resources import Device, DeviceKind, Resources
from slicelab.rspec import build_advertisement, validate_bytes, validate_file
from slicelab.services.inventory import advertisement_from_json, aggregate_offer
from slicelab.store.leases import LeaseRow
from slicelab.store.tables import members, projects, slices
from slicelab.store.uow import UnitOfWorkFactory

API = "/api/v1"
AUTH = "test.slicelab"
EXAMPLES = Path(os.environ["SLICELAB_SHARED"], "rspec/examples")
if not EXAMPLES.exists():
    EXAMPLES = Path(__file__).resolve().parents[4] / "shared" / "rspec" / "examples"


@pytest.fixture
def now() -> datetime:
    """The test's "now", taken when it starts (node health is judged against the clock, so a
    time fixed at import would make the nodes look down in a long, slow run)."""
    return datetime.now(UTC).replace(microsecond=0)


def _node(name: str, site: str, *, state: BootState, seen: datetime | None, cores: int,
          gpu: bool = False) -> Node:
    devices = (Device("gpu", DeviceKind.EXCLUSIVE),) if gpu else ()
    inv = Inventory(cores=cores, memory_mib=cores * 2048, disk_gib=100, devices=devices,
                    interfaces=({"name": "eth0", "mac": "02:00:00:00:00:01", "ipv4": None},))
    return Node(id=f"n-{name}", name=name, site=site, urn=node_urn(AUTH, name), boot_state=state,
                inventory=inv, last_seen=seen)


def seed(uow_factory: UnitOfWorkFactory, now: datetime) -> None:
    """Sites lab and edge; n1 (up, a GPU, booked 4 cores in an hour), n2 (down), n3 (debug)."""
    with uow_factory() as uow:
        for name in ("lab", "edge"):
            uow.aggregate.sites.add(Site(name=name, urn=site_urn(AUTH, name), created=now))
        for node in (_node("n1", "lab", state=BootState.BOOT, seen=now, cores=8, gpu=True),
                     _node("n2", "lab", state=BootState.BOOT, seen=now - timedelta(hours=1),
                           cores=4),
                     _node("n3", "edge", state=BootState.DEBUG, seen=now, cores=2)):
            uow.aggregate.nodes.add(node, sealed_key="-", created=now)
        conn = uow.aggregate.nodes.connection
        creator = conn.execute(select(members.c.id)).scalars().first()
        pid = conn.execute(insert(projects).values(name="p", description="", created=now)
                           ).inserted_primary_key[0]
        sid = conn.execute(insert(slices).values(
            project_id=pid, name="s", urn=f"urn:publicid:IDN+{AUTH}+slice+s", created=now,
            expires=now + timedelta(days=1), creator_id=creator)).inserted_primary_key[0]
        window = Window(now + timedelta(hours=1), now + timedelta(hours=3))
        uow.leases.leases.add(LeaseRow("L1", sid, "p", "s", window, "active", False, now),
                              [Booking("L1", "n-n1", str(sid), window,
                                       Resources.of(cores=4, memory_mib=8192), sliver="x1")])
        uow.commit()


@pytest.fixture
def seeded(uow_factory: UnitOfWorkFactory, admin: dict[str, str],
           now: datetime) -> dict[str, str]:
    seed(uow_factory, now)
    return admin


def _nodes(body: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {n["name"]: n for s in body["sites"] for n in s["nodes"]}


def test_free_now_and_over_a_window_with_a_booking(client: Any, seeded: dict[str, str],
                                                    now: datetime) -> None:
    current = client.get(f"{API}/resources", headers=seeded)
    assert current.status_code == 200, current.text
    nodes = _nodes(current.json())
    assert [s["name"] for s in current.json()["sites"]] == ["edge", "lab"]
    assert nodes["n1"]["free"]["cores"] == 8 and nodes["n1"]["health"] == "up"
    assert nodes["n1"]["free"]["devices"] == {"gpu": 1}
    assert nodes["n2"]["health"] == "down" and not nodes["n2"]["available"]
    assert nodes["n2"]["free"]["cores"] == 0 and nodes["n2"]["capacity"]["cores"] == 4
    assert nodes["n3"]["boot_state"] == "debug" and nodes["n3"]["free"]["cores"] == 0
    start = (now + timedelta(hours=2)).isoformat()
    until = (now + timedelta(hours=5)).isoformat()
    later = client.get(f"{API}/resources", headers=seeded,
                       params={"from": start, "until": until, "site": "lab"})
    assert later.status_code == 200, later.text
    lab = later.json()["sites"]
    assert [s["name"] for s in lab] == ["lab"] and lab[0]["node_count"] == 2
    n1 = _nodes(later.json())["n1"]
    assert (n1["free"]["cores"], n1["free"]["memory_mib"]) == (4, 16384 - 8192)
    assert lab[0]["free"]["cores"] == 4 and lab[0]["up"] == 1
    after = client.get(f"{API}/resources", headers=seeded,
                       params={"from": (now + timedelta(hours=3)).isoformat()})
    assert _nodes(after.json())["n1"]["free"]["cores"] == 8  # the lease ends at +3h


def test_resources_refuses_bad_input(client: Any, seeded: dict[str, str],
                                     now: datetime) -> None:
    assert client.get(f"{API}/resources", headers=seeded,
                      params={"site": "nowhere"}).status_code == 404
    naive = client.get(f"{API}/resources", headers=seeded, params={"from": "2031-01-01T10:00"})
    assert naive.status_code == 422
    backwards = client.get(f"{API}/resources", headers=seeded,
                           params={"from": now.isoformat(),
                                   "until": (now - timedelta(hours=1)).isoformat()})
    assert backwards.status_code == 422
    assert client.get(f"{API}/resources").status_code == 401


def test_advertisement_xml_validates_and_matches_the_json(client: Any,
                                                          seeded: dict[str, str]) -> None:
    xml = client.get(f"{API}/advertisement", headers={**seeded, "Accept": "application/xml"})
    assert xml.status_code == 200 and xml.headers["content-type"].startswith("application/xml")
    report = validate_bytes(xml.content, offer=aggregate_offer(AUTH))
    assert report.ok and report.kind == "advertisement", report
    body = client.get(f"{API}/advertisement", headers=seeded).json()
    assert body["aggregate_urn"] == f"urn:publicid:IDN+{AUTH}+authority+cm"
    by_name = {n["name"]: n for n in body["nodes"]}
    assert by_name["n1"]["available"] and not by_name["n2"]["available"]
    assert by_name["n1"]["free"]["cpu_milli"] == 8000
    root = etree.fromstring(xml.content)
    urns = sorted(n.get("component_id") for n in root.iter("{*}node"))
    assert urns == sorted(n["urn"] for n in body["nodes"])
    assert len(list(root.iter("{*}link"))) == len(body["links"]) == 3
    generated = datetime.fromisoformat(body["generated"])
    again = build_advertisement(advertisement_from_json(body), generated=generated)
    assert etree.tostring(etree.fromstring(again), method="c14n") == \
        etree.tostring(root, method="c14n") or _same_nodes(again, root)


def _same_nodes(a: bytes, root: Any) -> bool:
    """Equal but for the generation second (the two requests may straddle one)."""
    other = etree.fromstring(a)
    return [etree.tostring(n) for n in other.iter("{*}node")] == \
        [etree.tostring(n) for n in root.iter("{*}node")]


def test_validate_endpoint_agrees_with_validate_file(client: Any,
                                                     admin: dict[str, str]) -> None:
    files = sorted(EXAMPLES.glob("*.xml"))
    assert len(files) >= 10
    for path in files:
        r = client.post(f"{API}/rspec/validate",
                        headers={**admin, "Content-Type": "application/xml"},
                        content=path.read_bytes())
        assert r.status_code == 200, r.text
        local = validate_file(path, offer=aggregate_offer(AUTH))
        out = r.json()
        assert (out["ok"], out["kind"]) == (local.ok, local.kind), path.name
        assert [e["message"] for e in out["errors"]] == [p.message for p in local.errors]


def test_validate_endpoint_reports_broken_documents(client: Any, admin: dict[str, str]) -> None:
    r = client.post(f"{API}/rspec/validate", headers=admin, content=b"<rspec type='request'>")
    assert r.status_code == 200 and r.json()["ok"] is False and r.json()["errors"]
    assert client.post(f"{API}/rspec/validate", content=b"<x/>").status_code == 401


def test_cli_shows_resources_and_renders_the_advertisement(
        client: Any, seeded: dict[str, str], tmp_path: Path, now: datetime,
        monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from slicelab.cli import session
    from slicelab.cli.main import app as cli

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    monkeypatch.setenv(session.ENV_URL, "http://testserver")
    monkeypatch.setenv(session.ENV_TOKEN, seeded["Authorization"].removeprefix("Bearer "))
    runner = CliRunner()
    with session.use_transport(client._transport):
        table = runner.invoke(cli, ["resources", "--site", "lab"])
        assert table.exit_code == 0, table.output
        assert "site lab: 1/2 up" in table.output and "n2" in table.output
        as_json = runner.invoke(cli, ["resources", "--json", "--from",
                                      (now + timedelta(hours=2)).isoformat()])
        assert as_json.exit_code == 0 and '"free"' in as_json.output
        xml = runner.invoke(cli, ["resources", "advertisement", "--xml"])
    assert xml.exit_code == 0, xml.output
    assert validate_bytes(xml.output.encode(), offer=aggregate_offer(AUTH)).ok


def test_cli_validates_files_with_exit_status(tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from slicelab.cli.main import app as cli

    runner = CliRunner()
    request = tmp_path / "request.xml"
    request.write_text('<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">'
                       '<node client_id="n1"><sliver_type name="default-vm"/></node></rspec>')
    good = runner.invoke(cli, ["rspec", "validate", str(request)])
    assert good.exit_code == 0 and "valid request RSpec" in good.output, good.output
    broken = tmp_path / "broken.xml"
    broken.write_text("<rspec type='request'><node/>")
    bad = runner.invoke(cli, ["rspec", "validate", str(broken)])
    assert bad.exit_code == 1 and "INVALID" in bad.output
