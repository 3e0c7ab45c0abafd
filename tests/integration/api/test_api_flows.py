"""The REST contract, the happy paths: members, keys, tokens, projects, slices, audit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

API = "/api/v1"


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_health_and_openapi_need_no_auth(client: Any) -> None:
    assert client.get(f"{API}/health").json() == {"status": "ok"}
    schema = client.get(f"{API}/openapi.json").json()
    assert f"{API}/projects/{{project}}/slices/{{name}}/renew" in schema["paths"]
    assert client.get(f"{API}/docs").status_code == 200


def test_member_lifecycle(client: Any, admin: dict[str, str], api: Any) -> None:
    alice = api.member("alice", can_lead=True, roles=["operator"])
    me = client.get(f"{API}/whoami", headers=alice).json()
    assert me["name"] == "alice" and me["roles"] == ["operator"] and me["can_lead"]
    assert me["created"].endswith("Z") or me["created"].endswith("+00:00")
    listing = client.get(f"{API}/members", headers=alice, params={"limit": 1}).json()
    assert listing["total"] == 2 and len(listing["items"]) == 1 and listing["limit"] == 1
    assert client.get(f"{API}/members/root", headers=alice).status_code == 200


def test_keys_are_per_member(client: Any, admin: dict[str, str], api: Any) -> None:
    alice = api.member("alice")
    key = ed25519.Ed25519PrivateKey.generate().public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    r = client.post(f"{API}/keys", headers=alice, json={"key": key + " alice@lab"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert set(body) == {"id", "name", "type", "fingerprint", "bits", "created"}
    assert (body["type"], body["bits"], body["name"]) == ("ssh-ed25519", 256, "alice@lab")
    assert client.get(f"{API}/keys", headers=admin).json()["total"] == 0
    assert client.delete(f"{API}/keys/{body['id']}", headers=admin).status_code == 404
    assert client.delete(f"{API}/keys/{body['id']}", headers=alice).status_code == 204
    assert client.get(f"{API}/keys", headers=alice).json()["total"] == 0


def test_tokens_issue_list_revoke(client: Any, admin: dict[str, str], api: Any) -> None:
    r = client.post(f"{API}/tokens", headers=admin, json={"name": "ci", "expires_in_days": 2})
    assert r.status_code == 201
    made = r.json()
    expires = datetime.fromisoformat(made["expires"])
    assert timedelta(days=1.9) < expires - datetime.now(UTC) <= timedelta(days=2)
    assert client.get(f"{API}/whoami", headers=bearer(made["token"])).status_code == 200
    listed = client.get(f"{API}/tokens", headers=admin).json()["items"]
    assert made["token"] not in str(listed) and {t["name"] for t in listed} == {"test", "ci"}
    assert client.delete(f"{API}/tokens/{made['id']}", headers=admin).status_code == 204
    r = client.get(f"{API}/whoami", headers=bearer(made["token"]))
    assert r.status_code == 401 and "revoked" in r.json()["detail"]


def test_project_invitation_and_request(client: Any, admin: dict[str, str], api: Any) -> None:
    pat = api.member("pat", can_lead=True)
    alice, bob = api.member("alice"), api.member("bob")
    r = client.post(f"{API}/projects", headers=pat, json={"name": "netlab", "description": "x"})
    assert r.status_code == 201 and r.json()["members"] == [{"name": "pat", "role": "pi"}]
    assert client.post(f"{API}/projects/netlab/invitations", headers=pat,
                       json={"member": "alice"}).status_code == 201
    r = client.post(f"{API}/projects/netlab/join", headers=alice)
    assert (r.status_code, r.json()) == (200, {"status": "joined"})
    r = client.post(f"{API}/projects/netlab/join", headers=bob)
    assert (r.status_code, r.json()) == (202, {"status": "requested"})
    assert client.get(f"{API}/projects/netlab", headers=pat).json()["requests"] == ["bob"]
    assert client.get(f"{API}/projects/netlab", headers=alice).json()["requests"] is None
    r = client.post(f"{API}/projects/netlab/requests/bob/approve", headers=pat)
    assert r.status_code == 200
    assert {m["name"] for m in r.json()["members"]} == {"pat", "alice", "bob"}
    assert client.get(f"{API}/projects", headers=bob).json()["total"] == 1
    assert client.get(f"{API}/projects", headers=admin).json()["total"] == 1


def test_slice_lifecycle(client: Any, admin: dict[str, str], api: Any) -> None:
    pat = api.member("pat", can_lead=True)
    alice = api.member("alice")
    client.post(f"{API}/projects", headers=pat, json={"name": "netlab"})
    client.post(f"{API}/projects/netlab/invitations", headers=pat, json={"member": "alice"})
    client.post(f"{API}/projects/netlab/join", headers=alice)
    r = client.post(f"{API}/projects/netlab/slices", headers=alice, json={"name": "exp-1"})
    assert r.status_code == 201, r.text
    made = r.json()
    assert made["urn"] == "urn:publicid:IDN+test.slicelab:netlab+slice+exp-1"
    lifetime = datetime.fromisoformat(made["expires"]) - datetime.fromisoformat(made["created"])
    assert lifetime == timedelta(days=7) and made["creator"] == "alice"
    r = client.post(f"{API}/projects/netlab/slices/exp-1/renew", headers=alice, json={"max": True})
    granted = datetime.fromisoformat(r.json()["expires"])
    assert r.status_code == 200
    assert abs(granted - datetime.now(UTC) - timedelta(days=185)) < timedelta(minutes=1)
    r = client.post(f"{API}/projects/netlab/slices/exp-1/members", headers=alice,
                    json={"member": "pat"})
    assert r.status_code == 201 and r.json()["members"] == ["alice", "pat"]
    listed = client.get(f"{API}/slices", headers=pat, params={"project": "netlab"}).json()
    assert [s["name"] for s in listed["items"]] == ["exp-1"]
    got = client.get(f"{API}/projects/netlab/slices/exp-1", headers=pat).json()
    assert got["expires"] == r.json()["expires"]
    assert client.delete(f"{API}/projects/netlab/slices/exp-1", headers=pat).status_code == 204
    assert client.get(f"{API}/projects/netlab/slices/exp-1", headers=pat).status_code == 404


def test_audit_records_who_what_where(client: Any, admin: dict[str, str], api: Any) -> None:
    api.member("alice")
    entry = client.get(f"{API}/audit", headers=admin).json()["items"][0]
    assert (entry["actor"], entry["operation"], entry["object"]) == \
        ("root", "member.create", "member alice")
    assert entry["client_ip"] == "testclient" and entry["at"]
