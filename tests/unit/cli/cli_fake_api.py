"""A small in-memory stand-in for the slicelab REST API, as an httpx MockTransport handler.

It knows one member per token and enough of the contract for the command line's unit tests;
the end-to-end tests run the real server.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

NOW = datetime(2030, 1, 1, tzinfo=UTC)
Handler = Callable[["FakeApi", httpx.Request, re.Match[str]], httpx.Response]


def _json(request: httpx.Request) -> dict[str, Any]:
    import json

    return json.loads(request.content or b"{}")


def problem(status: int, title: str, detail: str) -> httpx.Response:
    body = {"type": "about:blank", "title": title, "status": status, "detail": detail}
    return httpx.Response(status, json=body, headers={"content-type": "application/problem+json"})


def page(items: list[dict[str, Any]]) -> httpx.Response:
    return httpx.Response(200, json={"items": items, "total": len(items), "limit": 100,
                                     "offset": 0})


class FakeApi:
    def __init__(self) -> None:
        self.tokens = {"admintok": "admin"}
        self.members = {"admin": {"name": "admin", "email": "admin@localhost", "roles": ["admin"],
                                  "can_lead": True, "created": NOW.isoformat()}}
        self.keys: list[dict[str, Any]] = []
        self.slices: dict[str, dict[str, Any]] = {}
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        auth = request.headers.get("authorization", "")
        if auth.removeprefix("Bearer ") not in self.tokens:
            return problem(401, "Authentication failed", "token unknown, expired or revoked")
        for method, pattern, handler in ROUTES:
            found = re.fullmatch(pattern, request.url.path)
            if found and method == request.method:
                return handler(self, request, found)
        return problem(404, "Not found", f"no route {request.method} {request.url.path}")

    def add_slice(self, project: str, name: str, *, days: float = 7) -> dict[str, Any]:
        item = {"project": project, "name": name, "creator": "admin", "members": ["admin"],
                "urn": f"urn:publicid:IDN+slicelab:{project}+slice+{name}",
                "created": NOW.isoformat(), "expires": (NOW + timedelta(days=days)).isoformat()}
        self.slices[f"{project}/{name}"] = item
        return item


def _whoami(api: FakeApi, request: httpx.Request, _: re.Match[str]) -> httpx.Response:
    name = api.tokens[request.headers["authorization"].removeprefix("Bearer ")]
    return httpx.Response(200, json=api.members[name])


def _add_key(api: FakeApi, request: httpx.Request, _: re.Match[str]) -> httpx.Response:
    text = _json(request)["key"]
    if not text.startswith("ssh-ed25519 "):
        return problem(422, "Invalid SSH key", "not an SSH public key: cannot parse it")
    key = {"id": str(len(api.keys) + 1), "name": _json(request).get("name"),
           "type": "ssh-ed25519", "fingerprint": "SHA256:x", "bits": 256}
    api.keys.append(key)
    return httpx.Response(201, json=key)


def _slices(api: FakeApi, request: httpx.Request, _: re.Match[str]) -> httpx.Response:
    return page(list(api.slices.values()))


def _slice(api: FakeApi, request: httpx.Request, found: re.Match[str]) -> httpx.Response:
    item = api.slices.get(f"{found['p']}/{found['s']}")
    if item is None:
        return problem(404, "Not found", f"no slice {found['p']}/{found['s']}")
    if request.method == "DELETE":
        del api.slices[item["project"] + "/" + item["name"]]
        return httpx.Response(204)
    return httpx.Response(200, json=item)


def _renew(api: FakeApi, request: httpx.Request, found: re.Match[str]) -> httpx.Response:
    item = api.slices[f"{found['p']}/{found['s']}"]
    days = _json(request).get("days", 0)
    if days > 100:
        return problem(422, "Policy violation", "days: at most 185 days from now allowed")
    expires = datetime.fromisoformat(item["expires"]) + timedelta(days=days)
    item["expires"] = expires.isoformat()
    return httpx.Response(200, json=item)


def _boom(api: FakeApi, request: httpx.Request, _: re.Match[str]) -> httpx.Response:
    return problem(500, "Internal error", "the database fell over")


_REF = r"/api/v1/projects/(?P<p>[^/]+)/slices/(?P<s>[^/]+)"
ROUTES: list[tuple[str, str, Handler]] = [
    ("GET", r"/api/v1/whoami", _whoami),
    ("POST", r"/api/v1/keys", _add_key),
    ("GET", r"/api/v1/keys", lambda api, r, m: page(api.keys)),
    ("GET", r"/api/v1/slices", _slices),
    ("GET", _REF, _slice),
    ("DELETE", _REF, _slice),
    ("POST", _REF + "/renew", _renew),
    ("GET", r"/api/v1/members", _boom),
]
