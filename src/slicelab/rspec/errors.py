"""Errors of the RSpec layer, as leaves of the one tree in :mod:`slicelab.domain.errors`.

    SlicelabError
    └── InvalidInput
        └── InvalidTopology
            └── InvalidRSpec           (422) an RSpec that cannot be used; names element + line
                ├── UnsafeXML          (422) a DTD, entity or other XML construct refused
                └── NotOffered         (422) well-formed, but asks for what this aggregate
                                             does not offer (sliver type, image, OpenFlow...)

Over-large documents raise :class:`slicelab.domain.errors.PayloadTooLarge` (413).
"""

from __future__ import annotations

from slicelab.domain.errors import InvalidTopology

__all__ = ["InvalidRSpec", "NotOffered", "UnsafeXML"]


class InvalidRSpec(InvalidTopology):
    """An RSpec refused; ``element`` and ``line`` say where (when known)."""

    title = "Invalid RSpec"

    def __init__(
        self,
        message: str,
        *,
        element: str | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        where = _where(element, line)
        super().__init__(f"{where}: {message}" if where else message, field=element or field)
        self.element = element
        self.line = line
        self.reason = message


class UnsafeXML(InvalidRSpec):
    title = "Unsafe XML"


class NotOffered(InvalidRSpec):
    title = "Not offered by this aggregate"


def _where(element: str | None, line: int | None) -> str:
    if element and line:
        return f"{element} (line {line})"
    if line:
        return f"line {line}"
    return element or ""
