"""A fake node agent that speaks the node channel through a test client, and set-up helpers."""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slicelab.identity.nodekey import decode_key, sign

API = "/api/v1"
AGENT = "/agent/v1"
MINIMAL_RSPEC = Path(
    os.environ["SLICELAB_SHARED"], "rspec", "examples", "geni-tools__amapi2-request-minimal.xml"
)


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


@dataclass
class FakeAgent:
    """Signs every request with its node key, as the real agent does."""

    client: Any
    node_id: str
    key: bytes
    name: str
    skew: float = 0.0
    sent: list[dict[str, str]] = field(default_factory=list)

    def headers(
        self,
        method: str,
        target: str,
        body: bytes,
        *,
        nonce: str | None = None,
        key: bytes | None = None,
    ) -> dict[str, str]:
        headers = sign(
            key or self.key,
            method,
            target,
            body,
            node_id=self.node_id,
            now=time.time() + self.skew,
            nonce=nonce,
        )
        self.sent.append(headers)
        return headers

    def get(self, target: str, **kw: Any) -> Any:
        return self.client.get(target, headers=self.headers("GET", target, b"", **kw))

    def post(self, target: str, data: Any, **kw: Any) -> Any:
        body = json.dumps(data).encode()
        headers = {**self.headers("POST", target, body, **kw), "Content-Type": "application/json"}
        return self.client.post(target, content=body, headers=headers)

    def desired(self, after: int = 0, wait: float = 0) -> Any:
        return self.get(f"{AGENT}/desired?after={after}&wait={wait:g}")

    def report(
        self,
        generation: int,
        *,
        host_ip: str,
        cores: int = 2,
        slivers: list[dict[str, Any]] | None = None,
    ) -> Any:
        inventory = {
            "cores": cores,
            "memory_mib": 4096,
            "disk_gib": 20,
            "host_ip": host_ip,
            "interfaces": [],
            "devices": [],
        }
        return self.post(
            f"{AGENT}/report",
            {
                "generation_applied": generation,
                "boot_state": "boot",
                "inventory": inventory,
                "slivers": slivers or [],
                "links": [],
            },
        )


def make_site(client: Any, admin: dict[str, str], name: str = "lab") -> None:
    r = client.post(f"{API}/sites", headers=admin, json={"name": name})
    assert r.status_code == 201, r.text


def enrollment_token(
    client: Any, admin: dict[str, str], site: str = "lab", name: str | None = None
) -> str:
    body = {"name": name} if name else {}
    r = client.post(f"{API}/sites/{site}/enrollments", headers=admin, json=body)
    assert r.status_code == 201, r.text
    return str(r.json()["token"])


def enroll(
    client: Any, admin: dict[str, str], hostname: str, *, host_ip: str, cores: int = 2
) -> FakeAgent:
    token = enrollment_token(client, admin)
    inventory = {"cores": cores, "memory_mib": 4096, "disk_gib": 20, "host_ip": host_ip}
    r = client.post(
        f"{AGENT}/enroll", json={"token": token, "hostname": hostname, "inventory": inventory}
    )
    assert r.status_code == 201, r.text
    out = r.json()
    return FakeAgent(client, out["node_id"], decode_key(out["node_key"]), out["node_name"])


def boot(agent: FakeAgent, *, host_ip: str, cores: int = 2) -> int:
    """First contact (new -> install), then report it applied (install -> boot)."""
    first = agent.desired()
    assert first.status_code == 200, first.text
    assert first.json()["boot_state"] == "install"
    assert agent.report(first.json()["generation"], host_ip=host_ip, cores=cores).status_code == 204
    booted = agent.desired(after=first.json()["generation"])
    assert booted.status_code == 200 and booted.json()["boot_state"] == "boot"
    return int(booted.json()["generation"])


def one_host_slice(client: Any, admin: dict[str, str], *, host_ip: str) -> FakeAgent:
    """Site lab with one booted node host1 at ``host_ip``, and slice p/s."""
    make_site(client, admin)
    agent = enroll(client, admin, "host1", host_ip=host_ip)
    boot(agent, host_ip=host_ip)
    assert client.post(f"{API}/projects", headers=admin, json={"name": "p"}).status_code == 201
    assert (
        client.post(f"{API}/projects/p/slices", headers=admin, json={"name": "s"}).status_code
        == 201
    )
    return agent
