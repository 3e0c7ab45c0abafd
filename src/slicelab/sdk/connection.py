"""One authenticated HTTP connection to a slicelab server: requests, errors and pages.

Everything below the typed :class:`~slicelab.sdk.client.Client` methods happens here, so
that the methods stay one call each. The httpx transport can be replaced (an
``httpx.MockTransport`` in tests, an in-process app).
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
from pydantic import BaseModel, ValidationError

from slicelab import __version__
from slicelab.domain.errors import InvalidInput, SlicelabError, Unavailable
from slicelab.domain.placement import Diagnosis, PlacementFailed

from .problems import raise_for_problem

__all__ = ["API_PREFIX", "DEFAULT_TIMEOUT", "PAGE_SIZE", "Connection"]

API_PREFIX = "/api/v1"
DEFAULT_TIMEOUT = 30.0
PAGE_SIZE = 100

M = TypeVar("M", bound=BaseModel)
Params = Mapping[str, str | int | bool | None]


class Connection:
    """Sends requests to ``url`` with a bearer ``token``; raises slicelab errors."""

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        transport: httpx.BaseTransport | None = None,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.url = _check_url(url)
        headers = {"User-Agent": f"slicelab-sdk/{__version__}", "Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._http = httpx.Client(
            base_url=self.url + API_PREFIX, headers=headers, timeout=timeout, transport=transport
        )

    def close(self) -> None:
        self._http.close()

    def call(
        self, method: str, path: str, *, json: Any = None, params: Params | None = None
    ) -> Any:
        """Send one request; return the decoded JSON body (None when there is none)."""
        return self._send(method, path, params=params, json=json)

    def send(
        self, method: str, path: str, *, content: bytes, content_type: str,
        params: Params | None = None,
    ) -> Any:
        """Send a raw body (an RSpec as ``application/xml``); return the decoded JSON answer."""
        return self._send(method, path, params=params, content=content,
                          headers={"Content-Type": content_type})

    def _send(self, method: str, path: str, *, params: Params | None, **body: Any) -> Any:
        query = {k: v for k, v in (params or {}).items() if v is not None}
        try:
            response = self._http.request(method, path, params=query, **body)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach slicelab at {self.url}: {_reason(exc)}") from exc
        _raise_for_problem(response)
        return _body(response, self.url)

    def get(self, model: type[M], path: str, *, params: Params | None = None) -> M:
        return parse(model, self.call("GET", path, params=params))

    def post(self, model: type[M], path: str, *, json: Any = None) -> M:
        return parse(model, self.call("POST", path, json=json if json is not None else {}))

    def delete(self, path: str) -> None:
        self.call("DELETE", path)

    def pages(self, model: type[M], path: str, *, params: Params | None = None) -> Iterator[M]:
        """Every item of a paged list, fetching the next page only when needed."""
        offset = 0
        while True:
            page = self.call("GET", path, params={**(params or {}),
                                                  "limit": PAGE_SIZE, "offset": offset})
            items = _items(page, self.url)
            yield from (parse(model, item) for item in items)
            offset += len(items)
            if not items or offset >= int(page.get("total", offset)):
                return


def parse(model: type[M], data: Any) -> M:
    """Validate ``data`` as ``model``; a mismatch is the server's fault and says so."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "body"
        raise SlicelabError(
            f"unexpected {model.__name__} from the server ({where}: {first['msg']})"
        ) from exc


def _raise_for_problem(response: httpx.Response) -> None:
    """Raise the error ``response`` stands for; a placement's ``diagnosis`` member comes back
    as :class:`~slicelab.domain.placement.PlacementFailed` carrying it."""
    if response.is_success:
        return
    response.read()
    try:
        body = response.json()
    except ValueError:
        body = None
    found = body.get("diagnosis") if isinstance(body, dict) else None
    if response.status_code == 409 and isinstance(found, dict):
        try:
            diagnosis = Diagnosis.from_dict(found)
        except (KeyError, TypeError, ValueError):
            diagnosis = None
        if diagnosis is not None:
            field = body.get("field") if isinstance(body, dict) else None
            raise PlacementFailed(diagnosis, field=field if isinstance(field, str) else None)
    raise_for_problem(response)


def _check_url(url: str) -> str:
    parsed = urlsplit(url)
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise InvalidInput(f"not an http(s) URL: {url!r}", field="url")
    return url.rstrip("/")


def _items(page: Any, url: str) -> list[Any]:
    if not isinstance(page, dict) or not isinstance(page.get("items"), list):
        raise SlicelabError(f"unexpected list response from {url} (no 'items')")
    return list(page["items"])


def _body(response: httpx.Response, url: str) -> Any:
    if response.status_code == 204 or not response.content:
        return None
    try:
        return response.json()
    except ValueError as exc:
        raise SlicelabError(f"{url} did not answer with JSON; is it a slicelab server?") from exc


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = re.sub(r"^\[Errno -?\d+\]\s*", "", str(exc))
    return text or type(exc).__name__
