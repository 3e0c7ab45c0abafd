"""Every bad case is a 4xx problem+json that names the problem, and stores nothing."""

from __future__ import annotations

from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from sqlalchemy import Engine, update

from slicelab.store.tables import api_tokens

API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def problem(r: Any, status: int, *words: str, field: str | None = None) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = r.json()
    assert {"type", "title", "status", "detail"} <= set(body) and body["status"] == status
    for word in words:
        assert word in body["detail"], body
    if field is not None:
        assert body.get("field") == field, body
    return body


@pytest.fixture
def world(client: Any, admin: dict[str, str], api: Any) -> dict[str, dict[str, str]]:
    """A project 'netlab' with PI pat, member alice and slice exp; bob outside it."""
    pat = api.member("pat", can_lead=True)
    alice, bob = api.member("alice"), api.member("bob")
    client.post(f"{API}/projects", headers=pat, json={"name": "netlab"})
    client.post(f"{API}/projects/netlab/invitations", headers=pat, json={"member": "alice"})
    client.post(f"{API}/projects/netlab/join", headers=alice)
    r = client.post(f"{API}/projects/netlab/slices", headers=pat, json={"name": "exp"})
    assert r.status_code == 201
    return {"admin": admin, "pat": pat, "alice": alice, "bob": bob}


def short_rsa() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH,
                            serialization.PublicFormat.OpenSSH).decode()


CASES: list[tuple[str, str, str, str, Any, int, tuple[str, ...], str | None]] = [
    ("bad slice name", "alice", "POST", "/projects/netlab/slices", {"name": "Exp_1"}, 422,
     ("name", "pattern"), "body.name"),
    ("slice name too long", "alice", "POST", "/projects/netlab/slices", {"name": "a" * 20}, 422,
     ("at most 19",), "body.name"),
    ("renew past max", "alice", "POST", "/projects/netlab/slices/exp/renew", {"days": 400}, 422,
     ("maximum of 185 days",), "days"),
    ("renew with two ways", "alice", "POST", "/projects/netlab/slices/exp/renew",
     {"days": 1, "max": True}, 422, ("exactly one",), None),
    ("expiry in the past", "alice", "POST", "/projects/netlab/slices",
     {"name": "old", "expires": "2001-01-01T00:00:00Z"}, 422, ("in the past",), "expires"),
    ("naive expiry", "alice", "POST", "/projects/netlab/slices",
     {"name": "old", "expires": "2031-01-01T00:00:00"}, 422, ("timezone",), "body.expires"),
    ("non-member makes a slice", "bob", "POST", "/projects/netlab/slices", {"name": "x"}, 403,
     ("bob", "netlab"), None),
    ("non-member reads a project", "bob", "GET", "/projects/netlab", None, 403, ("bob",), None),
    ("member acts as PI", "alice", "POST", "/projects/netlab/invitations", {"member": "bob"},
     403, ("project.invite", "alice"), None),
    ("member approves", "alice", "POST", "/projects/netlab/requests/bob/approve", None, 403,
     ("project.approve",), None),
    ("member deletes another's slice", "alice", "DELETE", "/projects/netlab/slices/exp", None,
     403, ("slice.delete",), None),
    ("member without can_lead makes a project", "bob", "POST", "/projects", {"name": "mine"},
     403, ("project.create",), None),
    ("non-admin makes a member", "pat", "POST", "/members",
     {"name": "eve", "email": "e@example.org"}, 403, ("member.create",), None),
    ("non-admin reads audit", "pat", "GET", "/audit", None, 403, ("audit.read",), None),
    ("member reads another member", "bob", "GET", "/members/alice", None, 403, (), None),
    ("malformed key", "alice", "POST", "/keys", {"key": "ssh-ed25519 AAAA$$$"}, 422,
     ("base64",), "key"),
    ("short rsa key", "alice", "POST", "/keys", {"key": short_rsa()}, 422,
     ("1024 bits", "2048"), "key"),
    ("duplicate member", "admin", "POST", "/members",
     {"name": "alice", "email": "a2@example.org"}, 409, ("alice",), "name"),
    ("duplicate slice", "pat", "POST", "/projects/netlab/slices", {"name": "exp"}, 409,
     ("exp",), "name"),
    ("duplicate project", "pat", "POST", "/projects", {"name": "netlab"}, 409, ("netlab",),
     "name"),
    ("slice member outside the project", "pat", "POST", "/projects/netlab/slices/exp/members",
     {"member": "bob"}, 422, ("project members",), "member"),
    ("unknown project", "alice", "GET", "/projects/nope", None, 404, ("nope",), None),
    ("unknown slice", "alice", "POST", "/projects/netlab/slices/nope/renew", {"max": True}, 404,
     ("nope",), None),
    ("invite unknown member", "pat", "POST", "/projects/netlab/invitations", {"member": "zed"},
     404, ("zed",), "member"),
    ("missing body", "alice", "POST", "/projects/netlab/slices", None, 422, ("body",), "body"),
    ("extra field", "alice", "POST", "/projects/netlab/slices", {"name": "x", "nodes": 3}, 422,
     ("nodes",), None),
    ("limit over 500", "admin", "GET", "/members?limit=501", None, 422, ("limit",),
     "query.limit"),
    ("token lifetime", "alice", "POST", "/tokens", {"name": "x", "expires_in_days": 366}, 422,
     ("expires_in_days",), None),
]


def test_bad_cases(client: Any, world: dict[str, dict[str, str]], api: Any) -> None:
    """All cases against one world (set up once per database, to keep the suite fast)."""
    failures = []
    for name, who, method, path, body, status, words, field in CASES:
        before = api.counts()
        r = client.request(method, API + path, headers=world[who], json=body)
        try:
            problem(r, status, *words, field=field)
            assert api.counts() == before, "something was stored"
        except AssertionError as exc:
            failures.append(f"{name}: {exc}")
    assert not failures, "\n".join(failures)


def test_malformed_json_and_huge_body(client: Any, admin: dict[str, str], api: Any) -> None:
    before = api.counts()
    headers = {**admin, "Content-Type": "application/json"}
    r = client.post(f"{API}/projects", headers=headers, content=b'{"name": "x"')
    problem(r, 400, "not valid JSON", field="body")
    huge = b'{"name": "big", "description": "' + b"x" * (2 << 20) + b'"}'
    problem(client.post(f"{API}/projects", headers=headers, content=huge), 413, "limit",
            field="body")

    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 65536

    problem(client.post(f"{API}/projects", headers=headers, content=chunks()), 413, "limit")
    assert api.counts() == before


def test_unknown_route_and_wrong_method(client: Any) -> None:
    problem(client.get(f"{API}/nowhere"), 404)
    r = client.put(f"{API}/health")
    problem(r, 405)
    assert r.headers["allow"] == "GET"


def test_tokens_unknown_expired_revoked(client: Any, admin: dict[str, str], api: Any,
                                        engine: Engine) -> None:
    problem(client.get(f"{API}/whoami"), 401, "no credentials")
    problem(client.get(f"{API}/whoami", headers=bearer("slt_nope")), 401, "unknown token")
    problem(client.get(f"{API}/whoami", headers={"Authorization": "Basic eDp5"}), 401, "Bearer")
    alice = api.member("alice")
    with engine.begin() as conn:
        conn.execute(update(api_tokens).values(expires=api_tokens.c.created))
    before = api.counts()
    r = client.post(f"{API}/tokens", headers=alice, json={"name": "more"})
    assert "expired" in problem(r, 401, field="Authorization")["detail"]
    assert r.headers["www-authenticate"].startswith("Bearer")
    assert api.counts() == before


def test_revoked_token_cannot_act(client: Any, admin: dict[str, str], api: Any) -> None:
    r = client.post(f"{API}/tokens", headers=admin, json={"name": "short"})
    made = r.json()
    client.delete(f"{API}/tokens/{made['id']}", headers=admin)
    before = api.counts()
    r = client.post(f"{API}/members", headers=bearer(made["token"]),
                    json={"name": "eve", "email": "e@example.org"})
    problem(r, 401, "revoked")
    assert api.counts() == before
