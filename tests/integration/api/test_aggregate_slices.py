"""Slice apply -> desired documents on the right nodes; status; release; exec relay."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from aggregate_fakes import API, FakeAgent, boot, enroll, make_site

from slicelab.api.agent import slices as slice_routes

TOPOLOGY = {
    "nodes": [{"name": "n1", "cores": 2, "memory": 256}, {"name": "n2", "cores": 2}],
    "links": [{"name": "l1", "members": ["n1:10.10.1.1/24", "n2"], "capacity": 100}],
}
IPS = {"host1": "172.31.250.2", "host2": "172.31.250.3"}


@pytest.fixture
def testbed(client: Any, admin: dict[str, str]) -> dict[str, tuple[FakeAgent, int]]:
    """Two booted nodes with 2 cores each, and slice p/s."""
    make_site(client, admin)
    agents = {}
    for host, ip in IPS.items():
        agent = enroll(client, admin, host, host_ip=ip)
        agents[host] = (agent, boot(agent, host_ip=ip))
    assert client.post(f"{API}/projects", headers=admin, json={"name": "p"}).status_code == 201
    r = client.post(f"{API}/projects/p/slices", headers=admin, json={"name": "s"})
    assert r.status_code == 201, r.text
    return agents


def _doc(agent: FakeAgent) -> dict[str, Any]:
    r = agent.desired()
    assert r.status_code == 200, r.text
    return dict(r.json())


def test_apply_puts_each_sliver_on_its_node_with_the_link_between(
    client: Any, admin: dict[str, str], testbed: dict[str, tuple[FakeAgent, int]]
) -> None:
    r = client.put(f"{API}/projects/p/slices/s/topology", headers=admin, json=TOPOLOGY)
    assert r.status_code == 200, r.text
    status = {s["client_id"]: s for s in r.json()["slivers"]}
    assert status["n1"]["node"] == "host1" and status["n2"]["node"] == "host2"
    assert status["n1"]["allocation_state"] == "geni_provisioned"
    assert status["n1"]["operational_state"] == "geni_configuring"
    assert status["n1"]["addresses"] == ["10.10.1.1/24"]
    assert status["n2"]["addresses"] == ["10.10.1.2/24"]
    one, two = _doc(testbed["host1"][0]), _doc(testbed["host2"][0])
    assert one["generation"] > testbed["host1"][1]
    (s1,), (s2,) = one["slivers"], two["slivers"]
    assert (s1["client_id"], s2["client_id"]) == ("n1", "n2")
    assert s1["hostname"] == "n1.s.p.slicelab.test"
    assert s1["slice_urn"] == "urn:publicid:IDN+test.slicelab:p+slice+s"
    assert s1["control"]["count"] == 10 and s1["cores"] == 2.0
    (link1,), (link2,) = one["links"], two["links"]
    assert link1["vni"] == link2["vni"] >= 4096
    assert link1["local_slivers"] == [s1["sliver_id"]]
    assert link1["remote_hosts"] == [IPS["host2"]] and link2["remote_hosts"] == [IPS["host1"]]
    assert s1["interfaces"][0]["link_id"] == link1["link_id"]
    assert s1["interfaces"][0]["ifname"] == "eth1"


def test_reapply_keeps_slivers_and_release_empties_the_nodes(
    client: Any, admin: dict[str, str], testbed: dict[str, tuple[FakeAgent, int]]
) -> None:
    client.put(f"{API}/projects/p/slices/s/topology", headers=admin, json=TOPOLOGY)
    first = _doc(testbed["host1"][0])
    again = client.put(f"{API}/projects/p/slices/s/topology", headers=admin, json=TOPOLOGY)
    assert again.status_code == 200
    assert _doc(testbed["host1"][0]) == first  # same ids, same generation
    too_big = {"nodes": [*TOPOLOGY["nodes"], {"name": "n3", "cores": 1}]}
    refused = client.put(f"{API}/projects/p/slices/s/topology", headers=admin, json=too_big)
    assert refused.status_code == 409 and "'n3'" in refused.json()["detail"]
    assert _doc(testbed["host1"][0]) == first  # nothing changed
    gone = client.delete(f"{API}/projects/p/slices/s/topology", headers=admin)
    assert gone.status_code == 204
    emptied = _doc(testbed["host1"][0])
    assert emptied["slivers"] == [] and emptied["links"] == []
    assert emptied["generation"] == first["generation"] + 1


def test_reports_show_up_in_status(
    client: Any, admin: dict[str, str], testbed: dict[str, tuple[FakeAgent, int]]
) -> None:
    client.put(f"{API}/projects/p/slices/s/topology", headers=admin, json=TOPOLOGY)
    agent, _ = testbed["host1"]
    doc = _doc(agent)
    sliver = {
        "sliver_id": doc["slivers"][0]["sliver_id"],
        "state": "ready",
        "error": None,
        "control_ip": "10.200.0.5",
        "ssh": {"host": IPS["host1"], "port": 20000},
    }
    assert (
        agent.report(doc["generation"], host_ip=IPS["host1"], slivers=[sliver]).status_code == 204
    )
    status = client.get(f"{API}/projects/p/slices/s/status", headers=admin).json()
    n1 = next(s for s in status["slivers"] if s["client_id"] == "n1")
    assert n1["state"] == "ready" and n1["operational_state"] == "geni_ready"
    assert n1["ssh_command"] == f"ssh -p 20000 root@{IPS['host1']}"
    n2 = next(s for s in status["slivers"] if s["client_id"] == "n2")
    assert n2["state"] is None and n2["ssh"] is None


def test_bad_topologies_are_refused_with_the_field(
    client: Any, admin: dict[str, str], testbed: dict[str, Any]
) -> None:
    url = f"{API}/projects/p/slices/s/topology"
    bad = {"nodes": [{"name": "n1"}], "links": [{"name": "l1", "members": ["n1", "zz"]}]}
    r = client.put(url, headers=admin, json=bad)
    assert r.status_code == 422 and "zz" in r.json()["detail"]
    r = client.put(url, headers=admin, json={"nodes": [{"name": "Bad_Name"}]})
    assert r.status_code == 422


def _agent_answers(agent: FakeAgent, after: int, stop: threading.Event) -> None:
    while not stop.is_set():
        r = agent.desired(after=after, wait=2)
        if r.status_code != 200:
            continue
        doc = r.json()
        after = doc["generation"]
        for command in doc["commands"]:
            out = " ".join(command["argv"][1:])
            agent.post(
                f"/agent/v1/commands/{command['id']}/result",
                {"exit_code": 3, "stdout": out + "\n", "stderr": ""},
            )


def test_exec_is_relayed_through_the_agent(
    client: Any, admin: dict[str, str], testbed: dict[str, tuple[FakeAgent, int]]
) -> None:
    client.put(f"{API}/projects/p/slices/s/topology", headers=admin, json=TOPOLOGY)
    agent, _ = testbed["host2"]
    stop = threading.Event()
    answering = threading.Thread(target=_agent_answers, args=(agent, 0, stop))
    answering.start()
    try:
        r = client.post(
            f"{API}/projects/p/slices/s/slivers/n2/exec",
            headers=admin,
            json={"argv": ["echo", "hello", "there"], "timeout": 5},
        )
    finally:
        stop.set()
        answering.join(10)
    assert r.status_code == 200, r.text
    assert r.json() == {"exit_code": 3, "stdout": "hello there\n", "stderr": ""}
    assert _doc(agent)["commands"] == []


def test_exec_without_an_agent_times_out(
    client: Any,
    admin: dict[str, str],
    testbed: dict[str, tuple[FakeAgent, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(slice_routes, "EXEC_GRACE", 0.1)
    client.put(f"{API}/projects/p/slices/s/topology", headers=admin, json=TOPOLOGY)
    r = client.post(
        f"{API}/projects/p/slices/s/slivers/n1/exec",
        headers=admin,
        json={"argv": ["sleep", "9"], "timeout": 0.2},
    )
    assert r.status_code == 504
    assert r.headers["content-type"].startswith("application/problem+json")
    assert _doc(testbed["host1"][0])["commands"] == []
    missing = client.post(
        f"{API}/projects/p/slices/s/slivers/nope/exec", headers=admin, json={"argv": ["true"]}
    )
    assert missing.status_code == 404


def test_non_members_cannot_touch_the_slice(
    client: Any, admin: dict[str, str], testbed: dict[str, Any]
) -> None:
    r = client.post(
        f"{API}/members", headers=admin, json={"name": "eve", "email": "eve@example.org"}
    )
    eve = {"Authorization": f"Bearer {r.json()['token']}"}
    assert (
        client.put(f"{API}/projects/p/slices/s/topology", headers=eve, json=TOPOLOGY).status_code
        == 403
    )
    assert client.get(f"{API}/projects/p/slices/s/status", headers=eve).status_code == 403


def test_reapply_with_a_new_link_keeps_the_kept_links_vni_and_subnet(
    client: Any, admin: dict[str, str], testbed: dict[str, tuple[FakeAgent, int]]
) -> None:
    two = {
        "nodes": [{"name": "n1", "cores": 1}, {"name": "n2", "cores": 1}],
        "links": [{"name": "l1", "members": ["n1", "n2"], "capacity": 100}],
    }
    assert client.put(f"{API}/projects/p/slices/s/topology", headers=admin, json=two).is_success
    more = {
        "nodes": [*two["nodes"], {"name": "n3", "cores": 1}],
        "links": [*two["links"], {"name": "l2", "members": ["n2", "n3"], "capacity": 10}],
    }
    for topology in (more, two, more):  # add a link, drop it, add it again
        r = client.put(f"{API}/projects/p/slices/s/topology", headers=admin, json=topology)
        assert r.status_code == 200, r.text
    links = {lk["link_id"]: lk for host in testbed.values() for lk in _doc(host[0])["links"]}
    assert len(links) == 2
    assert len({lk["vni"] for lk in links.values()}) == 2
