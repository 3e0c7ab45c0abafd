"""Writing RSpec XML: element factories shared by the request, manifest and ad writers."""

from __future__ import annotations

from datetime import UTC, datetime

from lxml import etree

from .document import Element
from .namespaces import EMULAB, GENI_V3, SLICELAB, XSI

__all__ = ["NSMAP", "child", "new_rspec", "rfc3339", "serialize"]

NSMAP = {None: GENI_V3, "xsi": XSI, "emulab": EMULAB, "slicelab": SLICELAB}


def new_rspec(kind: str, schema_url: str, *, generated: datetime | None = None,
              expires: datetime | None = None) -> Element:
    root = etree.Element(f"{{{GENI_V3}}}rspec", nsmap=NSMAP)  # type: ignore[arg-type]
    root.set("type", kind)
    root.set(f"{{{XSI}}}schemaLocation", f"{GENI_V3} {schema_url}")
    root.set("generated", rfc3339(generated or datetime.now(UTC)))
    root.set("generated_by", "slicelab")
    if expires is not None:
        root.set("expires", rfc3339(expires))
    return root


def child(parent: Element, tag: str, /, *, ns: str = GENI_V3,
          **attrs: str | int | float | None) -> Element:
    """A sub-element; attributes that are None are left out, others become strings."""
    el = etree.SubElement(parent, f"{{{ns}}}{tag}")
    for key, value in attrs.items():
        if value is not None:
            el.set(key, str(value))
    return el


def rfc3339(moment: datetime) -> str:
    aware = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    return aware.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def serialize(root: Element) -> bytes:
    return bytes(etree.tostring(root, xml_declaration=True, encoding="UTF-8",
                                pretty_print=True))
