"""The node channel: enrollment, signed requests, failure counting and the long-poll."""

from __future__ import annotations

import io
import statistics
import tarfile
import threading
import time
from datetime import timedelta
from typing import Any

from aggregate_fakes import AGENT, API, FakeAgent, boot, enroll, enrollment_token, make_site

from slicelab.domain.roles import Caller
from slicelab.identity.nodekey import new_nonce
from slicelab.services.sites import create_enrollment
from slicelab.store.uow import UnitOfWorkFactory


def test_enrollment_token_is_one_time(client: Any, admin: dict[str, str]) -> None:
    make_site(client, admin)
    token = enrollment_token(client, admin, name="host7")
    body = {"token": token, "hostname": "whatever.example", "inventory": {"cores": 2}}
    first = client.post(f"{AGENT}/enroll", json=body)
    assert first.status_code == 201, first.text
    out = first.json()
    assert out["node_name"] == "host7" and out["node_id"].startswith("n-")
    assert out["node_urn"] == "urn:publicid:IDN+test.slicelab+node+host7"
    again = client.post(f"{AGENT}/enroll", json=body)
    assert again.status_code == 401 and "used already" in again.json()["detail"]
    listed = client.get(f"{API}/nodes", headers=admin)
    assert listed.json()[0]["boot_state"] == "new"
    assert out["node_key"] not in listed.text and "key" not in listed.json()[0]


def test_expired_and_unknown_tokens_are_refused(
    client: Any, admin: dict[str, str], uow_factory: UnitOfWorkFactory
) -> None:
    make_site(client, admin)
    with uow_factory() as uow:
        root = Caller(member=uow.members.get("root"))
        token, _ = create_enrollment(uow, root, "lab", ttl=timedelta(seconds=-1))
    for candidate in (token, "not-a-token"):
        r = client.post(f"{AGENT}/enroll", json={"token": candidate, "hostname": "h"})
        assert r.status_code == 401
        assert r.headers["content-type"].startswith("application/problem+json")
    assert (
        "expired"
        in client.post(f"{AGENT}/enroll", json={"token": token, "hostname": "h"}).json()["detail"]
    )


def test_only_operators_enroll(client: Any, admin: dict[str, str]) -> None:
    make_site(client, admin)
    r = client.post(
        f"{API}/members", headers=admin, json={"name": "bob", "email": "bob@example.org"}
    )
    bob = {"Authorization": f"Bearer {r.json()['token']}"}
    assert client.post(f"{API}/sites/lab/enrollments", headers=bob).status_code == 403
    assert client.post(f"{API}/sites", headers=bob, json={"name": "x"}).status_code == 403
    assert client.get(f"{API}/sites", headers=bob).json()[0]["name"] == "lab"


def _failures(client: Any, admin: dict[str, str], name: str) -> tuple[int, str]:
    node = client.get(f"{API}/nodes/{name}", headers=admin).json()
    return node["auth_failures"], node["boot_state"]


def test_signed_requests_accepted_and_bad_ones_counted(client: Any, admin: dict[str, str]) -> None:
    make_site(client, admin)
    agent = enroll(client, admin, "host1", host_ip="172.31.250.2")
    boot(agent, host_ip="172.31.250.2")
    assert _failures(client, admin, "host1") == (0, "boot")
    forged = agent.get(f"{AGENT}/desired?wait=0", key=b"x" * 32)
    assert forged.status_code == 401 and "forged" in forged.json()["detail"]
    nonce = new_nonce()
    assert agent.get(f"{AGENT}/desired?wait=0", nonce=nonce).status_code == 200
    replayed = agent.get(f"{AGENT}/desired?wait=0", nonce=nonce)
    assert replayed.status_code == 401 and "replayed" in replayed.json()["detail"]
    stale = FakeAgent(client, agent.node_id, agent.key, agent.name, skew=-120).desired()
    assert stale.status_code == 401 and "stale" in stale.json()["detail"]
    assert _failures(client, admin, "host1") == (2, "boot")  # the replay reset nothing
    assert agent.desired().status_code == 200
    assert _failures(client, admin, "host1") == (0, "boot")
    unknown = FakeAgent(client, "n-nobody", agent.key, "x").desired()
    assert unknown.status_code == 401 and "unknown" in unknown.json()["detail"]


def test_repeated_failures_put_the_node_into_debug(client: Any, admin: dict[str, str]) -> None:
    make_site(client, admin)
    agent = enroll(client, admin, "host1", host_ip="172.31.250.2")
    boot(agent, host_ip="172.31.250.2")
    for _ in range(5):
        assert agent.get(f"{AGENT}/desired?wait=0", key=b"y" * 32).status_code == 401
    assert _failures(client, admin, "host1") == (5, "debug")
    doc = agent.desired().json()
    assert doc["boot_state"] == "debug"
    r = client.post(f"{API}/nodes/host1/state", headers=admin, json={"state": "boot"})
    assert r.status_code == 200 and r.json()["boot_state"] == "boot"
    bad = client.post(f"{API}/nodes/host1/state", headers=admin, json={"state": "install"})
    assert bad.status_code == 409


def _change_seen(
    client: Any, admin: dict[str, str], agent: Any, generation: int, state: str
) -> tuple[float, int]:
    """Move host1 to ``state`` while a long-poll waits; (seconds from the change's answer to
    the poll's, the new generation)."""
    result: dict[str, Any] = {}

    def poll() -> None:
        result["response"] = agent.desired(after=generation, wait=10)
        result["at"] = time.monotonic()

    waiter = threading.Thread(target=poll)
    waiter.start()
    time.sleep(0.2)  # the poll is waiting
    r = client.post(f"{API}/nodes/host1/state", headers=admin, json={"state": state})
    changed = time.monotonic()
    waiter.join(5)
    assert r.status_code == 200 and not waiter.is_alive()
    doc = result["response"].json()
    assert doc["generation"] > generation and doc["boot_state"] == state
    return result["at"] - changed, int(doc["generation"])


def test_long_poll_answers_within_100_ms_of_a_change(client: Any, admin: dict[str, str]) -> None:
    # The goal is the latency of a warm server; under a loaded CI machine one sample may be
    # slow for reasons outside slicelab (scheduling), so the median of several changes is
    # held to the goal, after one change that warms the path up.
    make_site(client, admin)
    agent = enroll(client, admin, "host1", host_ip="172.31.250.2")
    generation = boot(agent, host_ip="172.31.250.2")
    assert agent.desired(after=generation, wait=0.2).status_code == 204
    _, generation = _change_seen(client, admin, agent, generation, "disabled")
    latencies = []
    for state in ("boot", "disabled", "boot", "disabled", "boot"):
        latency, generation = _change_seen(client, admin, agent, generation, state)
        latencies.append(latency)
    print(
        "long-poll latency after a change (ms): " + ", ".join(f"{x * 1000:.1f}" for x in latencies)
    )
    assert statistics.median(latencies) < 0.1
    assert max(latencies) < 1.0


def test_images_are_built_listed_and_served_to_signed_nodes(
    client: Any, admin: dict[str, str]
) -> None:
    built = client.post(f"{API}/images/minimal/build", headers=admin)
    assert built.status_code == 201, built.text
    assert built.json()["name"] == "minimal" and built.json()["files"] > 3
    assert [i["name"] for i in client.get(f"{API}/images", headers=admin).json()] == ["minimal"]
    assert client.post(f"{API}/images/nosuch/build", headers=admin).status_code == 404
    make_site(client, admin)
    agent = enroll(client, admin, "host1", host_ip="172.31.250.2")
    assert client.get(f"{AGENT}/images/minimal").status_code == 401  # unsigned
    r = agent.get(f"{AGENT}/images/minimal")
    assert r.status_code == 200 and r.headers["content-type"] == "application/x-tar"
    with tarfile.open(fileobj=io.BytesIO(r.content)) as tar:
        names = tar.getnames()
    assert "bin/busybox" in names and "etc/inittab" in names
    assert agent.get(f"{AGENT}/images/nosuch").status_code == 404
