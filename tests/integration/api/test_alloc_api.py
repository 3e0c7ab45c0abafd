"""Allocation, the GENI lifecycle, leases, find-slot and quotas over REST."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aggregate_fakes import API, MINIMAL_RSPEC, FakeAgent, boot, enroll, make_site

from slicelab.settings import Settings

IPS = {"host1": "172.31.251.2", "host2": "172.31.251.3"}
S = f"{API}/projects/p/slices/s"
ONE = {"nodes": [{"name": "n1", "cores": 1, "memory": 256}]}


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, sweep_interval=0)


@pytest.fixture
def testbed(client: Any, admin: dict[str, str]) -> dict[str, FakeAgent]:
    """Two booted hosts with 2 cores and 4 GiB each, and slice p/s."""
    make_site(client, admin)
    agents = {}
    for host, ip in IPS.items():
        agents[host] = enroll(client, admin, host, host_ip=ip)
        boot(agents[host], host_ip=ip)
    assert client.post(f"{API}/projects", headers=admin, json={"name": "p"}).status_code == 201
    assert (
        client.post(f"{API}/projects/p/slices", headers=admin, json={"name": "s"}).status_code
        == 201
    )
    return agents


def _states(body: dict[str, Any]) -> list[tuple[str, str]]:
    return [(s["allocation_state"], s["operational_state"]) for s in body["slivers"]]


def test_allocate_provision_start_and_the_illegal_moves(
    client: Any, admin: dict[str, str], testbed: dict[str, FakeAgent]
) -> None:
    r = client.post(f"{S}/allocate", headers=admin, json={"topology": ONE, "duration": "2h"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert _states(body["status"]) == [("geni_allocated", "geni_pending_allocation")]
    lease = body["lease"]
    span = datetime.fromisoformat(lease["end"]) - datetime.fromisoformat(lease["start"])
    assert span == timedelta(hours=2)
    r = client.post(f"{S}/start", headers=admin)
    assert r.status_code == 409 and "geni_allocated" in r.json()["detail"]
    r = client.post(f"{S}/provision", headers=admin)
    assert _states(r.json()) == [("geni_provisioned", "geni_notready")]
    r = client.post(f"{S}/provision", headers=admin)
    assert r.status_code == 409 and "geni_provisioned" in r.json()["detail"]
    assert _states(client.post(f"{S}/start", headers=admin).json()) == [
        ("geni_provisioned", "geni_configuring")
    ]
    assert _states(client.post(f"{S}/stop", headers=admin).json()) == [
        ("geni_provisioned", "geni_stopping")
    ]
    r = client.post(f"{S}/allocate", headers=admin, json={"topology": ONE})
    assert r.status_code == 409 and "holds slivers already" in r.json()["detail"]
    assert client.delete(f"{S}/slivers", headers=admin).status_code == 204
    assert client.get(f"{S}/leases", headers=admin).json() == []


def test_leases_show_expiry_and_renew_reports_what_was_granted(
    client: Any, admin: dict[str, str], testbed: dict[str, FakeAgent]
) -> None:
    start = datetime.now(UTC) + timedelta(hours=1)
    r = client.post(
        f"{S}/allocate",
        headers=admin,
        json={"topology": ONE, "start": start.isoformat(), "duration": "1h"},
    )
    assert r.status_code == 200, r.text
    (lease,) = client.get(f"{S}/leases", headers=admin).json()
    assert datetime.fromisoformat(lease["slivers"][0]["expires"]) == start + timedelta(hours=1)
    (renewed,) = client.post(f"{S}/renew-lease", headers=admin, json={"by": "30m"}).json()
    assert datetime.fromisoformat(renewed["end"]) == start + timedelta(minutes=90)
    r = client.post(f"{S}/renew-lease", headers=admin, json={"by": "30d"})
    assert r.status_code == 422 and "renew the slice first" in r.json()["detail"]
    r = client.post(f"{S}/renew-lease", headers=admin, json={"by": "1h", "max": True})
    assert r.status_code == 422
    past = (datetime.now(UTC) - timedelta(hours=1)).isoformat()
    client.delete(f"{S}/slivers", headers=admin)
    r = client.post(
        f"{S}/allocate", headers=admin, json={"topology": ONE, "start": past, "duration": "1h"}
    )
    assert r.status_code == 422 and r.json()["field"] == "start"


def test_a_request_that_does_not_fit_gets_the_diagnosis(
    client: Any, admin: dict[str, str], testbed: dict[str, FakeAgent]
) -> None:
    big = {"nodes": [{"name": "big", "cores": 3, "memory": 256}]}
    r = client.post(f"{S}/allocate", headers=admin, json={"topology": big, "duration": "1h"})
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    problem = r.json()
    assert "cannot place node 'big': capacity" in problem["detail"]
    diagnosis = problem["diagnosis"]
    assert diagnosis["subject"] == "node 'big'" and diagnosis["constraint"] == "capacity"
    assert {n["host"] for n in diagnosis["nearest"]} == {"host1", "host2"}
    assert "cores: needs 3.0, has 2.0" in diagnosis["nearest"][0]["shortfall"][0]


def test_an_rspec_allocates_with_a_manifest(
    client: Any, admin: dict[str, str], testbed: dict[str, FakeAgent]
) -> None:
    r = client.post(
        f"{S}/allocate?duration=1h",
        headers={**admin, "Content-Type": "application/xml"},
        content=MINIMAL_RSPEC.read_bytes(),
    )
    assert r.status_code == 200, r.text
    assert "sliver_id=" in r.json()["manifest"]
    assert r.json()["status"]["slivers"][0]["client_id"] == "foo"


INSTALL_RSPEC = b"""<?xml version="1.0" encoding="UTF-8"?>
<rspec xmlns="http://www.geni.net/resources/rspec/3" type="request">
  <node client_id="foo">
    <services><install url="no-such-file.tar.gz" install_path="/opt"/></services>
  </node>
</rspec>"""


def test_an_rspec_installing_an_unregistered_file_is_refused_at_allocate(
    client: Any, admin: dict[str, str], testbed: dict[str, FakeAgent]
) -> None:
    r = client.post(
        f"{S}/allocate?duration=1h",
        headers={**admin, "Content-Type": "application/xml"},
        content=INSTALL_RSPEC,
    )
    assert r.status_code == 422, r.text
    detail = r.json()["detail"]
    assert "<install url='no-such-file.tar.gz'>" in detail and "not registered" in detail
    assert client.get(f"{S}/leases", headers=admin).json() == []
    assert client.get(f"{S}/status", headers=admin).json()["slivers"] == []


def test_find_slot_answers_the_earliest_window(
    client: Any, admin: dict[str, str], testbed: dict[str, FakeAgent]
) -> None:
    two = {"nodes": [{"name": "a", "cores": 2}, {"name": "b", "cores": 2}]}
    r = client.post(f"{S}/allocate", headers=admin, json={"topology": two, "duration": "2h"})
    assert r.status_code == 200, r.text
    end = datetime.fromisoformat(r.json()["lease"]["end"])
    r = client.post(
        f"{API}/resources/find-slot", headers=admin, json={"topology": ONE, "duration": "3h"}
    )
    assert r.status_code == 200, r.text
    assert datetime.fromisoformat(r.json()["start"]) == end
    assert r.json()["hosts"]["n1"] in IPS


def test_quotas_are_set_by_staff_and_enforced(
    client: Any, admin: dict[str, str], testbed: dict[str, FakeAgent]
) -> None:
    r = client.put(
        f"{API}/projects/p/quota", headers=admin, json={"cores": 1, "longest_lease": "1h"}
    )
    assert r.status_code == 200, r.text
    assert client.get(f"{API}/projects/p/quota", headers=admin).json()["cores"] == 1
    r = client.post(f"{S}/allocate", headers=admin, json={"topology": ONE, "duration": "2h"})
    assert r.status_code == 422 and "at most 1 hour" in r.json()["detail"]
    r = client.put(f"{API}/sites/lab/limits", headers=admin, json={"cores_per_sliver": 0.5})
    assert r.status_code == 200, r.text
    r = client.post(f"{S}/allocate", headers=admin, json={"topology": ONE, "duration": "1h"})
    assert r.status_code == 422 and "0.5 cores per sliver" in r.json()["detail"]
    r = client.put(f"{API}/sites/lab/limits", headers={}, json={})
    assert r.status_code == 401
