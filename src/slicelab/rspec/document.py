"""Safe loading of RSpec XML, and small helpers to name elements in messages.

RSpecs come from strangers, so the parser resolves no entities, loads no DTD, touches no
network, refuses huge trees and any document type declaration (the vehicle of "billion
laughs" bombs and external entities such as ``file:///etc/passwd``), and caps the size.
"""

from __future__ import annotations

import re
from typing import Any

from lxml import etree

from slicelab.domain.errors import PayloadTooLarge

from .errors import InvalidRSpec, UnsafeXML

__all__ = [
    "MAX_RSPEC_BYTES",
    "Element",
    "describe",
    "load_document",
    "local_name",
    "namespace_of",
    "safe_parser",
]

MAX_RSPEC_BYTES = 2 * 1024 * 1024
Element = Any  # lxml's _Element; kept loose so that callers need no lxml stubs
_DOCTYPE = re.compile(rb"<!\s*(DOCTYPE|ENTITY)", re.IGNORECASE)


def safe_parser() -> etree.XMLParser:
    """An lxml parser that expands nothing and fetches nothing."""
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False,
                           dtd_validation=False, huge_tree=False, remove_blank_text=False)


def load_document(data: bytes | str, *, max_bytes: int = MAX_RSPEC_BYTES) -> Element:
    """Parse ``data`` safely and return its root element."""
    raw = data.encode("utf-8") if isinstance(data, str) else bytes(data)
    if len(raw) > max_bytes:
        raise PayloadTooLarge(f"RSpec is {len(raw)} bytes; at most {max_bytes} are accepted",
                              field="rspec")
    if not raw.strip():
        raise InvalidRSpec("the RSpec is empty", element="rspec")
    match = _DOCTYPE.search(raw)
    if match:
        raise UnsafeXML(_unsafe_message(), line=raw.count(b"\n", 0, match.start()) + 1)
    root = _parse(raw)
    if root.getroottree().docinfo.internalDTD is not None:
        raise UnsafeXML(_unsafe_message(), line=1)
    return root


def _unsafe_message() -> str:
    return ("document type declarations (DTDs and entities) are not accepted in RSpecs; "
            "they are how XML bombs and external-entity reads work")


def _parse(raw: bytes) -> Element:
    try:
        return etree.fromstring(raw, safe_parser())
    except etree.XMLSyntaxError as exc:
        line = exc.lineno if isinstance(exc.lineno, int) else None
        raise InvalidRSpec(f"not well-formed XML: {exc.msg}", line=line) from None


def local_name(el: Element) -> str:
    return str(etree.QName(el).localname)


def namespace_of(el: Element) -> str:
    return str(etree.QName(el).namespace or "")


def describe(el: Element, *, prefix: str = "") -> str:
    """``<node client_id='left'>`` style name for messages."""
    name = f"{prefix}:{local_name(el)}" if prefix else local_name(el)
    for attr in ("client_id", "component_id", "name"):
        value = el.get(attr)
        if value is not None:
            return f"<{name} {attr}={value!r}>"
    return f"<{name}>"
