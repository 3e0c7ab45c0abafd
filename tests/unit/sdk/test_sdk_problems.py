"""Error responses become the matching exception of slicelab's one error tree."""

from __future__ import annotations

import httpx
import pytest

from slicelab.domain import errors
from slicelab.sdk import Client

URL = "http://slicelab.test"


def _client(status: int, body: object | None = None, *, text: str | None = None) -> Client:
    def handler(request: httpx.Request) -> httpx.Response:
        if text is not None:
            return httpx.Response(status, text=text)
        return httpx.Response(status, json=body,
                              headers={"content-type": "application/problem+json"})

    return Client(URL, "tok", transport=httpx.MockTransport(handler))


def _problem(status: int, title: str, detail: str, **extra: object) -> dict[str, object]:
    return {"type": "about:blank", "title": title, "status": status, "detail": detail, **extra}


@pytest.mark.parametrize(
    ("status", "title", "expected"),
    [
        (401, "Authentication failed", errors.AuthenticationFailed),
        (403, "Permission denied", errors.PermissionDenied),
        (404, "Not found", errors.NotFound),
        (409, "Conflict", errors.Conflict),
        (413, "Payload too large", errors.PayloadTooLarge),
        (422, "Invalid input", errors.InvalidInput),
        (400, "Bad request", errors.InvalidInput),
        (503, "Service unavailable", errors.Unavailable),
        (500, "Internal error", errors.SlicelabError),
    ],
)
def test_status_picks_the_exception(status: int, title: str, expected: type) -> None:
    with pytest.raises(expected) as caught:
        _client(status, _problem(status, title, "the server's words")).whoami()
    assert type(caught.value) is expected
    assert str(caught.value) == "the server's words"


@pytest.mark.parametrize(
    ("status", "title", "expected"),
    [
        (422, "Invalid name", errors.InvalidName),
        (422, "Invalid SSH key", errors.InvalidKey),
        (422, "Policy violation", errors.PolicyViolation),
        (409, "Illegal state transition", errors.IllegalTransition),
        (409, "Insufficient resources", errors.InsufficientResources),
    ],
)
def test_title_picks_the_subclass(status: int, title: str, expected: type) -> None:
    with pytest.raises(expected) as caught:
        _client(status, _problem(status, title, "detail", field="name")).whoami()
    assert type(caught.value) is expected
    assert caught.value.field == "name"


def test_title_of_another_status_is_not_trusted() -> None:
    with pytest.raises(errors.NotFound) as caught:
        _client(404, _problem(404, "Invalid SSH key", "gone")).whoami()
    assert type(caught.value) is errors.NotFound


def test_framework_validation_errors_name_the_field() -> None:
    body = {"detail": [{"loc": ["body", "email"], "msg": "Field required", "type": "missing"}]}
    with pytest.raises(errors.InvalidInput, match=r"^body\.email: Field required$"):
        _client(422, body).whoami()


def test_non_json_error_names_status_and_url() -> None:
    with pytest.raises(errors.Unavailable, match=r"HTTP 503 Service Unavailable from "
                       r"http://slicelab.test/api/v1/whoami"):
        _client(503, text="<html>bad gateway</html>").whoami()


def test_unknown_client_status_is_invalid_input() -> None:
    with pytest.raises(errors.InvalidInput, match="slow down"):
        _client(429, {"detail": "slow down"}).whoami()


def test_connection_refused_names_the_url() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno 111] Connection refused", request=request)

    client = Client(URL, "tok", transport=httpx.MockTransport(refuse))
    expected = r"^cannot reach slicelab at http://slicelab.test: Connection refused$"
    with pytest.raises(errors.Unavailable, match=expected):
        client.whoami()


def test_timeout_is_unavailable() -> None:
    def slow(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("read timed out", request=request)

    with pytest.raises(errors.Unavailable, match="timed out"):
        Client(URL, "tok", transport=httpx.MockTransport(slow)).whoami()


def test_a_real_closed_port_is_unavailable() -> None:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(errors.Unavailable, match=f"127.0.0.1:{port}"):
        Client(f"http://127.0.0.1:{port}", "tok", timeout=5).whoami()


def test_bad_url_is_refused_before_any_request() -> None:
    with pytest.raises(errors.InvalidInput, match="not an http"):
        Client("slicelab.test:8470", "tok")


def test_success_without_json_is_reported() -> None:
    with pytest.raises(errors.SlicelabError, match="did not answer with JSON"):
        _client(200, text="<html>hello</html>").whoami()


def test_success_with_wrong_shape_is_reported() -> None:
    with pytest.raises(errors.SlicelabError, match=r"unexpected Member from the server \(name"):
        _client(200, {"email": "a@b"}).whoami()
