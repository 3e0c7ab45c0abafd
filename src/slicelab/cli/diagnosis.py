"""Why a request did not fit, printed for people: what could not be placed (a node or a
link), the constraint that failed, its numbers, and the nearest candidate hosts with what
each lacks. Used by every command that places something (``slice apply``, ``slice
allocate``, ``resources find-slot``)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from slicelab.domain.placement import Diagnosis, PlacementFailed

from .output import error_line

__all__ = ["diagnosis_lines", "explained"]


def diagnosis_lines(diagnosis: Diagnosis) -> list[str]:
    """The diagnosis as indented lines, the numbers and candidates one per line."""
    lines = [f"cannot place {diagnosis.subject}",
             f"  constraint: {diagnosis.constraint}"]
    lines += [f"    {item}" for item in diagnosis.detail]
    if diagnosis.nearest:
        lines.append("  nearest hosts:")
        for near in diagnosis.nearest:
            lacks = "; ".join(near.shortfall) or "fits on its own (not with the rest)"
            lines.append(f"    {near.host_name}: {lacks}")
    return lines


@contextmanager
def explained() -> Iterator[None]:
    """Print the diagnosis of a placement that failed inside the block, then let it go on."""
    try:
        yield
    except PlacementFailed as exc:
        for line in diagnosis_lines(exc.diagnosis):
            error_line(line)
        raise
