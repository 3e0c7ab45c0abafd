"""Errors as ``application/problem+json`` (RFC 9457): ``{type, title, status, detail, field?}``
plus any extension members the error carries (:meth:`SlicelabError.extensions`, for example
the ``diagnosis`` of a placement that failed, wherever it is raised).

Every failure leaves the API this way: slicelab's own errors with the status their class names,
FastAPI's validation errors (naming the field), unknown routes, wrong methods, malformed JSON,
bodies over the limit, and, at this process edge, anything unexpected (without a traceback).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from slicelab.domain.errors import SlicelabError

__all__ = [
    "PROBLEM_RESPONSES",
    "BodyLimit",
    "Problem",
    "install_problem_handlers",
    "problem_response",
]

log = logging.getLogger("slicelab.api")
PROBLEM_TYPE = "application/problem+json"


class Problem(BaseModel):
    """A problem document; extension members (``diagnosis``, ...) may follow the fields."""

    model_config = ConfigDict(extra="allow")
    type: str
    title: str
    status: int
    detail: str
    field: str | None = None


def _problem_doc(description: str) -> dict[str, Any]:
    return {"model": Problem, "description": description,
            "content": {PROBLEM_TYPE: {"schema": {"$ref": "#/components/schemas/Problem"}}}}


PROBLEM_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: _problem_doc("Malformed request (for example, JSON that does not parse)"),
    401: _problem_doc("No credentials, or an unknown, expired or revoked token"),
    403: _problem_doc("Not allowed to do this"),
    404: _problem_doc("No such object"),
    409: _problem_doc("Exists already, or in the way"),
    413: _problem_doc("Body over the limit"),
    422: _problem_doc("A value breaks a rule; names the field"),
}


def problem_response(status: int, title: str, detail: str, *, field: str | None = None,
                     headers: dict[str, str] | None = None,
                     extensions: Mapping[str, Any] | None = None) -> JSONResponse:
    """The problem document; ``extensions`` never replace the standard members."""
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    body = Problem(type=f"urn:slicelab:problem:{slug}", title=title, status=status,
                   detail=detail, field=field).model_dump(exclude_none=True)
    body.update({k: v for k, v in (extensions or {}).items() if k not in _STANDARD})
    if status == 401:
        headers = {**(headers or {}), "WWW-Authenticate": 'Bearer realm="slicelab"'}
    return JSONResponse(body, status_code=status, media_type=PROBLEM_TYPE, headers=headers)


_STANDARD = frozenset({"type", "title", "status", "detail", "field", "instance"})


def _on_slicelab(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, SlicelabError)
    return problem_response(exc.status, exc.title, exc.message, field=exc.field,
                            extensions=exc.extensions())


def _field(loc: Sequence[Any]) -> str:
    return ".".join(str(part) for part in loc)


def _on_validation(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": ("body",), "msg": "invalid", "type": ""}
    if first.get("type") == "json_invalid":
        return problem_response(400, "Malformed JSON", f"body is not valid JSON: {first['msg']}",
                                field="body")
    details = "; ".join(f"{_field(e['loc'])}: {e['msg']}" for e in errors[:5])
    return problem_response(422, "Invalid input", details, field=_field(first["loc"]))


def _on_http(_request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    titles = {404: "Not found", 405: "Method not allowed", 413: "Payload too large"}
    title = titles.get(exc.status_code, "HTTP error")
    field = "body" if exc.status_code == 413 else None
    return problem_response(exc.status_code, title, str(exc.detail), field=field,
                            headers=dict(exc.headers or {}))


def _on_unexpected(request: Request, exc: Exception) -> JSONResponse:
    log.error("unexpected error in %s %s", request.method, request.url.path, exc_info=exc)
    return problem_response(500, "Internal error", "slicelab hit an unexpected error; "
                            "it has been logged")


def install_problem_handlers(app: FastAPI) -> None:
    app.add_exception_handler(SlicelabError, _on_slicelab)
    app.add_exception_handler(RequestValidationError, _on_validation)
    app.add_exception_handler(HTTPException, _on_http)
    app.add_exception_handler(Exception, _on_unexpected)


def _too_large(limit: int) -> HTTPException:
    # An HTTPException, so that FastAPI passes it through while it reads the body.
    return HTTPException(413, f"request body is over the limit of {limit} bytes")


class BodyLimit:
    """ASGI middleware: refuse bodies over ``limit`` bytes with 413, declared or streamed."""

    def __init__(self, app: ASGIApp, *, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if declared.isdigit() and int(declared) > self.limit:
            exc = _too_large(self.limit)
            response = problem_response(413, "Payload too large", exc.detail, field="body")
            await response(scope, receive, send)
            return
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise _too_large(self.limit)
            return message

        await self.app(scope, counted, send)
