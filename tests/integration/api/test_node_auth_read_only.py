"""A steady node's signed request is checked in a read-only unit of work: on SQLite it does not
wait for a writer holding the database, and its heartbeat still arrives (batched)."""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

from aggregate_fakes import AGENT, boot, enroll, make_site
from fastapi import FastAPI

from slicelab.domain.nodes import Site, site_urn
from slicelab.services import nodes as node_service
from slicelab.store.uow import UnitOfWorkFactory


def test_a_steady_node_authenticates_while_a_writer_holds_the_database(
        client: Any, admin: dict[str, str], app: FastAPI,
        uow_factory: UnitOfWorkFactory) -> None:
    make_site(client, admin)
    agent = enroll(client, admin, "host1", host_ip="172.31.249.2")
    boot(agent, host_ip="172.31.249.2")
    state = app.state.aggregate
    target = f"{AGENT}/desired?after=0&wait=0"
    with uow_factory() as writer:  # BEGIN IMMEDIATE on SQLite: the write lock is taken
        writer.aggregate.sites.add(Site(name="edge", urn=site_urn("t", "edge"),
                                        created=datetime.now(UTC)))
        start = time.monotonic()
        node = node_service.authenticate(
            state.uow_factory, state.ctx, state.nonces, method="GET", path=target, body=b"",
            headers=agent.headers("GET", target, b""), now=time.time())
        waited = time.monotonic() - start
        writer.commit()
    assert node.id == agent.node_id and node.last_seen is not None
    assert waited < 2  # a write transaction would have waited for the writer (10 s on SQLite)
