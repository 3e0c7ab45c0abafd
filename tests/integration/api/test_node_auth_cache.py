"""Signed node requests are checked from memory: a steady node's requests need no unit of
work, an operator's change takes effect at once, another process's key rotation within the
cache's bound; an idle long-poll right after a check needs no database either."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from aggregate_fakes import AGENT, FakeAgent, boot, enroll, make_site
from fastapi import FastAPI
from sqlalchemy import update

from slicelab.api.app import create_app
from slicelab.identity.nodekey import new_key
from slicelab.settings import Settings
from slicelab.store.node_tables import nodes
from slicelab.store.uow import UnitOfWork, UnitOfWorkFactory, read_only

STORE_MISSING = f"{AGENT}/store/chunks/missing"


BACKGROUND = ("heartbeat-flusher", "slicelab-sweep")  # threads that write on their own


class CountingUnits:
    """A unit-of-work factory that counts the units requests make (read-only ones too)."""

    def __init__(self, inner: UnitOfWorkFactory) -> None:
        self.inner, self.made = inner, 0

    def _count(self) -> None:
        if threading.current_thread().name not in BACKGROUND:
            self.made += 1

    def __call__(self) -> UnitOfWork:
        self._count()
        return self.inner()

    def read_only(self) -> UnitOfWork:
        self._count()
        return read_only(self.inner)


@pytest.fixture
def units(uow_factory: UnitOfWorkFactory) -> CountingUnits:
    return CountingUnits(uow_factory)


@pytest.fixture
def app(
    units: CountingUnits, settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> FastAPI:
    monkeypatch.setenv("SLICELAB_DATA_DIR", str(tmp_path / "data"))
    return create_app(settings, uow_factory=units)


def _booted(client: Any, admin: dict[str, str]) -> tuple[FakeAgent, int]:
    make_site(client, admin)
    agent = enroll(client, admin, "host1", host_ip="172.31.248.2")
    return agent, boot(agent, host_ip="172.31.248.2")


def _missing(agent: FakeAgent) -> Any:
    return agent.post(STORE_MISSING, {"hashes": ["0" * 64]})


def test_a_steady_nodes_requests_need_no_unit_of_work(
    client: Any, admin: dict[str, str], units: CountingUnits, app: FastAPI
) -> None:
    agent, _ = _booted(client, admin)
    assert _missing(agent).status_code == 200  # read once (the boot report forgot the node)
    before = units.made
    for _ in range(5):
        answer = _missing(agent)
        assert answer.status_code == 200 and answer.json() == {"missing": ["0" * 64]}
    assert units.made == before
    beats = app.state.aggregate.ctx.heartbeats
    assert beats.pending(agent.node_id) is not None or beats.stats.written > 0


def test_a_cached_node_is_still_refused_when_replayed_or_forged(
    client: Any, admin: dict[str, str]
) -> None:
    agent, _ = _booted(client, admin)
    assert _missing(agent).status_code == 200
    body = b'{"hashes": []}'
    headers = {**agent.headers("POST", STORE_MISSING, body), "Content-Type": "application/json"}
    assert client.post(STORE_MISSING, content=body, headers=headers).status_code == 200
    again = client.post(STORE_MISSING, content=body, headers=headers)
    assert again.status_code == 401 and "replayed" in again.json()["detail"]
    forged = agent.post(STORE_MISSING, {"hashes": []}, key=b"z" * 32)
    assert forged.status_code == 401 and "forged" in forged.json()["detail"]
    node = client.get(f"/api/v1/nodes/{agent.name}", headers=admin).json()
    assert node["auth_failures"] == 2


def test_an_operators_change_takes_effect_at_once(
    client: Any, admin: dict[str, str], app: FastAPI
) -> None:
    agent, _ = _booted(client, admin)
    keys = app.state.aggregate.keys
    assert _missing(agent).status_code == 200 and keys.get(agent.node_id) is not None
    moved = client.post(
        f"/api/v1/nodes/{agent.name}/state", headers=admin, json={"state": "disabled"}
    )
    assert moved.status_code == 200
    assert keys.get(agent.node_id) is None
    assert _missing(agent).status_code == 200
    assert keys.get(agent.node_id).node.boot_state == "disabled"


def test_a_key_rotated_elsewhere_takes_effect_within_the_bound(
    client: Any, admin: dict[str, str], app: FastAPI, uow_factory: UnitOfWorkFactory
) -> None:
    agent, _ = _booted(client, admin)
    state = app.state.aggregate
    state.keys.ttl = 0.3
    assert _missing(agent).status_code == 200
    fresh = new_key()
    with uow_factory() as uow:  # as another server process would: no notification here
        uow.aggregate.nodes.connection.execute(
            update(nodes)
            .where(nodes.c.id == agent.node_id)
            .values(sealed_key=state.ctx.keybox.seal(fresh))
        )
        uow.commit()
    time.sleep(0.4)
    old = _missing(agent)
    assert old.status_code == 401 and "forged" in old.json()["detail"]
    assert _missing(FakeAgent(client, agent.node_id, fresh, agent.name)).status_code == 200


def test_an_idle_poll_after_a_check_needs_no_database(
    client: Any, admin: dict[str, str], units: CountingUnits
) -> None:
    agent, generation = _booted(client, admin)
    assert agent.desired(after=generation, wait=0).status_code == 204  # checks, read only
    before = units.made
    for _ in range(3):
        assert agent.desired(after=generation, wait=0).status_code == 204
    assert units.made == before
    moved = client.post(f"/api/v1/nodes/{agent.name}/state", headers=admin, json={"state": "debug"})
    assert moved.status_code == 200
    changed = agent.desired(after=generation, wait=0)
    assert changed.status_code == 200 and changed.json()["boot_state"] == "debug"
