"""The packaged GENI RSpec v3 schemas, and checking documents against them.

``xsd/geni-v3`` holds the official v3 request schema (``request.xsd`` + ``request-common.xsd``
+ ``any-extension-schema.xsd``) and ``ad.xsd``; ``xsd/pgv2`` holds the ProtoGENI v2 schemas,
the direct ancestor of v3 with the same structure in another namespace.

* requests are checked against ``geni-v3/request.xsd`` as is;
* advertisements against ``geni-v3/ad.xsd``, whose include ``ad-common.xsd`` is missing from
  the v3 copy: the ProtoGENI v2 ``ad-common.xsd`` is served in its place, read into the v3
  namespace (v3's ``ad.xsd`` is v2's word for word but for the namespace);
* manifests against ProtoGENI v2 ``manifest.xsd`` read into the v3 namespace (no v3 manifest
  schema is packaged). That schema requires ``vlantag`` on manifest links.

Nothing is fetched: every ``schemaLocation`` resolves inside the package.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path
from typing import Any

from lxml import etree

from .document import Element
from .errors import InvalidRSpec
from .namespaces import GENI_V3, PG_V2
from .notes import Notes

__all__ = ["XSD_DIR", "SchemaIssue", "SchemaKind", "check_request_schema", "schema_issues"]

XSD_DIR = Path(__file__).resolve().parent / "xsd"
_V3 = XSD_DIR / "geni-v3"
_V2 = XSD_DIR / "pgv2"
_UNQUALIFIED_ATTR = re.compile(r"attribute '([^'{}]+)': The attribute '[^']+' is not allowed")


class SchemaKind(StrEnum):
    REQUEST = "request"
    MANIFEST = "manifest"
    ADVERTISEMENT = "advertisement"


@dataclass(frozen=True, slots=True)
class SchemaIssue:
    line: int
    message: str
    tolerated: bool = False  # a small real-world deviation that is accepted with a note


class _PackagedSchemas(etree.Resolver):
    """Serves includes from the package; ProtoGENI v2 files are read into the v3 namespace."""

    def resolve(self, system_url: str, public_id: str,  # type: ignore[override]
                context: Any) -> Any:
        path = Path(system_url.removeprefix("file://"))
        if path == _V3 / "ad-common.xsd":
            path = _V2 / "ad-common.xsd"
        if path.parent == _V2:
            return self.resolve_string(_as_v3(path), context, base_url=str(path))
        if path.parent == _V3 and path.exists():
            return self.resolve_filename(str(path), context)  # type: ignore[attr-defined]
        raise InvalidRSpec(f"schema include {system_url!r} is not packaged")


def _as_v3(path: Path) -> bytes:
    return path.read_bytes().replace(PG_V2.encode(), GENI_V3.encode())


@cache
def _schema(kind: SchemaKind) -> etree.XMLSchema:
    parser = etree.XMLParser(no_network=True, resolve_entities=False, load_dtd=False)
    parser.resolvers.add(_PackagedSchemas())
    top = {SchemaKind.REQUEST: _V3 / "request.xsd", SchemaKind.ADVERTISEMENT: _V3 / "ad.xsd",
           SchemaKind.MANIFEST: _V2 / "manifest.xsd"}[kind]
    text = _as_v3(top) if top.parent == _V2 else top.read_bytes()
    doc = etree.fromstring(text, parser, base_url=str(top)).getroottree()
    return etree.XMLSchema(doc)


def schema_issues(root: Element, *, kind: SchemaKind) -> list[SchemaIssue]:
    """Every schema error of ``root``; unknown unqualified attributes are marked tolerated."""
    schema = _schema(kind)
    if schema.validate(root.getroottree()):
        return []
    return [_issue(e.line, e.message) for e in schema.error_log]  # type: ignore[attr-defined]


def _issue(line: int, message: str) -> SchemaIssue:
    return SchemaIssue(line, message, tolerated=bool(_UNQUALIFIED_ATTR.search(message)))


def check_request_schema(root: Element, notes: Notes) -> None:
    """Raise on the first real schema error; note the tolerated ones."""
    for issue in schema_issues(root, kind=SchemaKind.REQUEST):
        if not issue.tolerated:
            raise InvalidRSpec(f"does not follow the GENI v3 request schema: {issue.message}",
                               line=issue.line)
        attr = _UNQUALIFIED_ATTR.search(issue.message)
        name = attr.group(1) if attr else "?"
        notes.add(f"line {issue.line}: attribute {name!r} is not part of GENI RSpec v3; "
                  f"ignored")
