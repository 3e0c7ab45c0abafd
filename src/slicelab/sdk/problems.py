"""Turn an HTTP error response into the matching exception of :mod:`slicelab.domain.errors`.

The server answers errors with ``application/problem+json`` ``{type, title, status, detail,
field?}``. The exception class is chosen by status and, where the status has several kinds
(422: invalid name, key, topology...), by the problem's title. Bodies that are not problems
(a proxy's HTML page, a framework's default ``{"detail": ...}``) still give a useful message.
"""

from __future__ import annotations

from typing import Any

import httpx

from slicelab.domain import errors

__all__ = ["error_for", "raise_for_problem"]

_BY_STATUS: dict[int, type[errors.SlicelabError]] = {
    400: errors.InvalidInput,
    401: errors.AuthenticationFailed,
    403: errors.PermissionDenied,
    404: errors.NotFound,
    409: errors.Conflict,
    413: errors.PayloadTooLarge,
    422: errors.InvalidInput,
    503: errors.Unavailable,
}


def _subclasses(base: type[errors.SlicelabError]) -> list[type[errors.SlicelabError]]:
    found = [base]
    for sub in base.__subclasses__():
        found.extend(_subclasses(sub))
    return found


def _by_title(title: str, base: type[errors.SlicelabError]) -> type[errors.SlicelabError]:
    """The most specific subclass of ``base`` whose title the server named, else ``base``."""
    for cls in _subclasses(base):
        if cls.title.lower() == title.lower():
            return cls
    return base


def _detail(body: Any, response: httpx.Response) -> str:
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list) and detail:
            return _validation_detail(detail[0])
        if isinstance(body.get("title"), str):
            return str(body["title"])
    return f"HTTP {response.status_code} {response.reason_phrase} from {response.request.url}"


def _validation_detail(item: Any) -> str:
    """One line from a FastAPI-style validation error item ``{loc, msg}``."""
    if not isinstance(item, dict):
        return str(item)
    where = ".".join(str(part) for part in item.get("loc", ()))
    message = str(item.get("msg", "invalid value"))
    return f"{where}: {message}" if where else message


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def error_for(response: httpx.Response) -> errors.SlicelabError:
    """The exception that ``response`` (an error status) stands for, carrying its detail."""
    body = _json(response)
    base = _BY_STATUS.get(response.status_code)
    if base is None:
        base = errors.InvalidInput if 400 <= response.status_code < 500 else errors.SlicelabError
    title = body.get("title") if isinstance(body, dict) else None
    cls = _by_title(title, base) if isinstance(title, str) else base
    field = body.get("field") if isinstance(body, dict) else None
    return cls(_detail(body, response), field=field if isinstance(field, str) else None)


def raise_for_problem(response: httpx.Response) -> None:
    """Raise :func:`error_for` ``response`` unless it is a success."""
    if response.is_success:
        return
    response.read()
    raise error_for(response)
