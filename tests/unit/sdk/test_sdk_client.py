"""The SDK sends the contract's requests and returns typed objects."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from slicelab.domain import errors
from slicelab.sdk import Client, Slice, SliceHandle

URL = "http://slicelab.test"
SLICE = {"project": "wireless", "name": "mesh1",
         "urn": "urn:publicid:IDN+slicelab:wireless+slice+mesh1",
         "created": "2030-01-01T00:00:00Z", "expires": "2030-01-08T00:00:00Z",
         "creator": "alice", "members": [{"name": "alice", "role": "lead"}]}


class Recorder:
    """A MockTransport handler answering from a table, remembering every request."""

    def __init__(self, answers: dict[tuple[str, str], tuple[int, Any]]) -> None:
        self.answers = answers
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        status, body = self.answers[(request.method, request.url.path)]
        if callable(body):
            body = body(request)
        return httpx.Response(status) if body is None else httpx.Response(status, json=body)

    def client(self) -> Client:
        return Client(URL, "secret", transport=httpx.MockTransport(self))

    def body(self, index: int = -1) -> Any:
        return json.loads(self.requests[index].content or b"null")


def test_whoami_sends_the_bearer_token_and_parses_times() -> None:
    rec = Recorder({("GET", "/api/v1/whoami"): (200, {
        "name": "alice", "email": "a@x.org", "roles": ["pi"], "can_lead": True,
        "created": "2030-01-01T12:00:00Z"})})
    me = rec.client().whoami()
    assert rec.requests[0].headers["authorization"] == "Bearer secret"
    assert me.name == "alice" and me.can_lead and me.roles == ("pi",)
    assert me.created == datetime(2030, 1, 1, 12, tzinfo=UTC)


def test_lists_follow_pages_until_total() -> None:
    def page(request: httpx.Request) -> dict[str, Any]:
        offset = int(request.url.params["offset"])
        names = [f"m{i}" for i in range(250)][offset:offset + 100]
        items = [{"name": n, "email": f"{n}@x.org"} for n in names]
        return {"items": items, "total": 250, "limit": 100, "offset": offset}

    rec = Recorder({("GET", "/api/v1/members"): (200, page)})
    members = rec.client().members()
    assert [m.name for m in members][:2] == ["m0", "m1"] and len(members) == 250
    assert [r.url.params["offset"] for r in rec.requests] == ["0", "100", "200"]


def test_empty_page_stops_even_if_total_is_wrong() -> None:
    rec = Recorder({("GET", "/api/v1/keys"): (200, {"items": [], "total": 5, "limit": 100,
                                                     "offset": 0})})
    assert rec.client().keys() == []
    assert len(rec.requests) == 1


def test_slice_list_filters_by_project() -> None:
    rec = Recorder({("GET", "/api/v1/slices"): (200, {"items": [SLICE], "total": 1})})
    found = rec.client().slices(project="wireless")
    assert rec.requests[0].url.params["project"] == "wireless"
    assert found[0].ref == "wireless/mesh1"


def test_create_slice_posts_name_and_days() -> None:
    rec = Recorder({("POST", "/api/v1/projects/wireless/slices"): (201, SLICE)})
    made = rec.client().create_slice("wireless/mesh1", days=3)
    assert rec.body() == {"name": "mesh1", "days": 3}
    assert isinstance(made, Slice) and made.expires.tzinfo is not None


def test_create_slice_until_sends_iso_time() -> None:
    rec = Recorder({("POST", "/api/v1/projects/wireless/slices"): (201, SLICE)})
    rec.client().create_slice("wireless/mesh1", expires=datetime(2030, 1, 8, tzinfo=UTC))
    assert rec.body() == {"name": "mesh1", "expires": "2030-01-08T00:00:00+00:00"}


@pytest.mark.parametrize(
    ("kwargs", "body"),
    [({"days": 2}, {"days": 2}), ({"maximum": True}, {"max": True}),
     ({"until": datetime(2030, 2, 1, tzinfo=UTC)}, {"until": "2030-02-01T00:00:00+00:00"})],
)
def test_renew_sends_exactly_one_way(kwargs: dict[str, Any], body: dict[str, Any]) -> None:
    rec = Recorder({("POST", "/api/v1/projects/wireless/slices/mesh1/renew"): (200, SLICE)})
    rec.client().renew_slice("wireless/mesh1", **kwargs)
    assert rec.body() == body


@pytest.mark.parametrize("kwargs", [{}, {"days": 2, "maximum": True}])
def test_renew_refuses_none_or_two_ways(kwargs: dict[str, Any]) -> None:
    rec = Recorder({})
    with pytest.raises(errors.InvalidInput, match="exactly one"):
        rec.client().renew_slice("wireless/mesh1", **kwargs)
    assert rec.requests == []


@pytest.mark.parametrize("ref", ["Wireless/mesh1", "wireless", "wireless/mesh_1", "a/b/c",
                                 "wireless/a-very-long-slice-name-here"])
def test_bad_slice_names_fail_before_any_request(ref: str) -> None:
    rec = Recorder({})
    with pytest.raises(errors.InvalidName):
        rec.client().get_slice(ref)
    assert rec.requests == []


def test_naive_times_are_refused() -> None:
    with pytest.raises(errors.InvalidInput, match="time zone"):
        Recorder({}).client().create_slice("p/s", expires=datetime(2030, 1, 1))


def test_delete_and_204() -> None:
    rec = Recorder({("DELETE", "/api/v1/projects/p/slices/s"): (204, None),
                    ("DELETE", "/api/v1/tokens/a/b"): (204, None)})
    client = rec.client()
    assert client.delete_slice("p/s") is None
    client.revoke_token("a/b")
    assert rec.requests[-1].url.raw_path == b"/api/v1/tokens/a%2Fb"


def test_member_creation_returns_the_token() -> None:
    answer = {"member": {"name": "bob", "email": "b@x.org", "roles": [], "can_lead": True},
              "token": "t0k"}
    rec = Recorder({("POST", "/api/v1/members"): (201, answer)})
    made = rec.client().create_member("bob", email="b@x.org", can_lead=True, roles=("operator",))
    assert rec.body() == {"name": "bob", "email": "b@x.org", "can_lead": True,
                          "roles": ["operator"]}
    assert made.token == "t0k" and made.member.can_lead


def test_keys_and_tokens_accept_numeric_ids() -> None:
    rec = Recorder({
        ("POST", "/api/v1/keys"): (201, {"id": 7, "name": "laptop", "type": "ssh-ed25519",
                                         "fingerprint": "SHA256:abc", "bits": 256}),
        ("POST", "/api/v1/tokens"): (201, {"id": 3, "name": "ci", "token": "s3cret",
                                           "expires": "2030-03-01T00:00:00Z"}),
    })
    client = rec.client()
    key = client.add_key("ssh-ed25519 AAAA laptop\n", name="laptop")
    assert key.id == "7" and rec.body() == {"key": "ssh-ed25519 AAAA laptop", "name": "laptop"}
    token = client.create_token("ci", expires_in_days=30)
    assert token.id == "3" and token.token == "s3cret"
    assert rec.body() == {"name": "ci", "expires_in_days": 30}


def test_project_calls() -> None:
    project = {"name": "wireless", "description": "mesh", "created": "2030-01-01T00:00:00Z",
               "members": [{"name": "alice", "role": "pi"}], "invitations": ["bob"]}
    rec = Recorder({
        ("POST", "/api/v1/projects"): (201, project),
        ("GET", "/api/v1/projects/wireless"): (200, project),
        ("POST", "/api/v1/projects/wireless/invitations"): (201, {"member": "bob"}),
        ("POST", "/api/v1/projects/wireless/join"): (202, {"status": "requested"}),
        ("POST", "/api/v1/projects/wireless/requests/bob/approve"): (200, {}),
    })
    client = rec.client()
    assert client.create_project("wireless", description="mesh").role_of("alice") == "pi"
    assert client.project("wireless").invitations == ("bob",)
    client.invite("wireless", "bob")
    assert rec.body() == {"member": "bob"}
    assert client.join("wireless").status == "requested"
    client.approve("wireless", "bob")
    assert len(rec.requests) == 5


def test_slice_handle_works_by_name() -> None:
    rec = Recorder({("GET", "/api/v1/projects/wireless/slices/mesh1"): (200, SLICE),
                    ("POST", "/api/v1/projects/wireless/slices/mesh1/members"): (201, {})})
    handle = rec.client().slice("wireless/mesh1")
    assert isinstance(handle, SliceHandle) and rec.requests == []
    assert handle.info().creator == "alice"
    handle.add_member("bob")
    assert rec.body() == {"member": "bob"}


def test_client_closes_as_context_manager() -> None:
    rec = Recorder({("GET", "/api/v1/health"): (200, {"status": "ok"})})
    with rec.client() as client:
        assert client.health() == {"status": "ok"}
    with pytest.raises(RuntimeError):
        client.health()
