"""Push latency of the node channel: how soon a change reaches a long-polling agent.

A real server (uvicorn, SQLite in a temporary directory) runs in this process; N fake agents
enroll, boot and long-poll ``/agent/v1/desired`` with signed requests from their own threads.
An operator then moves each node's boot state back and forth; for every change we measure
the time from the operator's request returning (committed) to the agent receiving the new
document, and the operator request itself.

    .venv/bin/python bench/node_channel.py [--quick] [--nodes N] [--changes K]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from slicelab.api.app import create_app
from slicelab.domain.members import Member, PlatformRole
from slicelab.identity.nodekey import decode_key, sign
from slicelab.services.tokens import issue
from slicelab.settings import Settings
from slicelab.store.engine import make_engine
from slicelab.store.migrate import upgrade
from slicelab.store.uow import unit_of_work_factory


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Agent:
    def __init__(self, url: str, node_id: str, key: bytes) -> None:
        self.http = httpx.Client(base_url=url, timeout=70)
        self.node_id, self.key = node_id, key
        self.generation = 0
        self.received: dict[int, float] = {}
        self.stop = threading.Event()

    def request(self, method: str, target: str, body: Any = None) -> httpx.Response:
        raw = json.dumps(body).encode() if body is not None else b""
        headers = sign(self.key, method, target, raw, node_id=self.node_id, now=time.time())
        if body is not None:
            headers["Content-Type"] = "application/json"
        return self.http.request(method, target, content=raw, headers=headers)

    def poll_forever(self) -> None:
        while not self.stop.is_set():
            r = self.request("GET", f"/agent/v1/desired?after={self.generation}&wait=2")
            if r.status_code == 200:
                self.generation = r.json()["generation"]
                self.received[self.generation] = time.monotonic()
                self.request("POST", "/agent/v1/report",
                             {"generation_applied": self.generation, "boot_state": "boot"})


def _admin_token(settings: Settings) -> str:
    engine = make_engine(settings.database_url)
    upgrade(engine)
    with unit_of_work_factory(engine)() as uow:
        member = uow.members.add(Member(name="root", email="root@example.org",
                                        created=datetime.now(UTC), can_lead=True,
                                        roles=frozenset({PlatformRole.ADMIN})))
        _token, secret = issue(uow, member, name="bench", days=1)
        uow.commit()
    engine.dispose()
    return secret


def _serve(settings: Settings, port: int) -> uvicorn.Server:
    engine = make_engine(settings.database_url)
    app = create_app(settings, uow_factory=unit_of_work_factory(engine))
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error"))
    threading.Thread(target=server.run, daemon=True).start()
    while not server.started:
        time.sleep(0.01)
    return server


def _enroll(op: httpx.Client, url: str, name: str) -> Agent:
    token = op.post("/api/v1/sites/lab/enrollments", json={"name": name}).json()["token"]
    out = httpx.post(f"{url}/agent/v1/enroll",
                     json={"token": token, "hostname": name, "inventory": {"cores": 2}}).json()
    return Agent(url, out["node_id"], decode_key(out["node_key"]))


def _measure(op: httpx.Client, agents: dict[str, Agent], changes: int) -> tuple[list[float],
                                                                                 list[float]]:
    push, request = [], []
    for i in range(changes):
        for name, agent in agents.items():
            before = agent.generation
            start = time.monotonic()
            r = op.post(f"/api/v1/nodes/{name}/state",
                        json={"state": "disabled" if i % 2 == 0 else "boot"})
            if r.status_code != 200:
                raise SystemExit(f"node_channel: {name}: {r.json()['detail']}")
            done = time.monotonic()
            while agent.generation <= before:
                time.sleep(0.0005)
            push.append(max(0.0, agent.received[agent.generation] - done))
            request.append(done - start)
    return push, request


def run(nodes: int, changes: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        os.environ["SLICELAB_DATA_DIR"] = str(Path(tmp) / "data")
        settings = Settings(database_url=f"sqlite:///{tmp}/bench.db", authority="bench.slicelab",
                            run_migrations=False)
        token = _admin_token(settings)
        url = f"http://127.0.0.1:{_free_port()}"
        server = _serve(settings, int(url.rsplit(":", 1)[1]))
        op = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)
        op.post("/api/v1/sites", json={"name": "lab"}).raise_for_status()
        agents = {f"host{i}": _enroll(op, url, f"host{i}") for i in range(nodes)}
        threads = [threading.Thread(target=a.poll_forever, daemon=True) for a in agents.values()]
        for t in threads:
            t.start()
        time.sleep(1.0)  # first contact, install, boot
        try:
            push, request = _measure(op, agents, changes)
        finally:
            for agent in agents.values():
                agent.stop.set()
            for t in threads:
                t.join(5)
            server.should_exit = True
    return {"push_p50_ms": statistics.median(push) * 1000,
            "push_max_ms": max(push) * 1000,
            "change_request_p50_ms": statistics.median(request) * 1000,
            "samples": float(len(push))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 nodes, 10 changes each")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--changes", type=int, default=40)
    args = parser.parse_args()
    nodes, changes = (2, 10) if args.quick else (args.nodes, args.changes)
    figures = run(nodes, changes)
    print(f"{'nodes':>6} {'changes':>8} {'push p50 ms':>12} {'push max ms':>12} "
          f"{'request p50 ms':>15}")
    print(f"{nodes:>6} {changes:>8} {figures['push_p50_ms']:>12.1f} "
          f"{figures['push_max_ms']:>12.1f} {figures['change_request_p50_ms']:>15.1f}")
    print(f"longpoll_push_p50: {figures['push_p50_ms']:.1f} ms")
    print(f"longpoll_push_max: {figures['push_max_ms']:.1f} ms")
    print(f"state_change_request_p50: {figures['change_request_p50_ms']:.1f} ms")


if __name__ == "__main__":
    main()
