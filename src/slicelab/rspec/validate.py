"""``slicelab rspec validate FILE``: check an RSpec and report every problem found, with lines.

Requests get the full check (schema, then everything :func:`~.parse.parse_request` checks
against the offer); manifests and advertisements are checked against their schemas (see
:mod:`.schema` for which files stand in for the v3 ones that are not packaged).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from slicelab.domain.errors import SlicelabError

from .document import MAX_RSPEC_BYTES, Element, load_document
from .errors import InvalidRSpec
from .notes import Notes
from .offer import Offer
from .parse import check_root, parse_request
from .schema import SchemaKind, schema_issues

__all__ = ["Problem", "ValidationReport", "render_report", "validate_bytes", "validate_file"]


@dataclass(frozen=True, slots=True)
class Problem:
    message: str
    line: int | None = None


@dataclass(frozen=True, slots=True)
class ValidationReport:
    source: str
    kind: str  # request, manifest, advertisement, or "unknown"
    errors: tuple[Problem, ...] = ()
    notes: tuple[str, ...] = ()
    summary: str = ""

    @property
    def ok(self) -> bool:
        return not self.errors


def validate_file(path: str | Path, *, offer: Offer,
                  max_bytes: int = MAX_RSPEC_BYTES) -> ValidationReport:
    file = Path(path)
    try:
        size = file.stat().st_size
        if size > max_bytes:
            raise InvalidRSpec(f"file is {size} bytes; at most {max_bytes} are accepted")
        data = file.read_bytes()
    except OSError as exc:
        return ValidationReport(str(file), "unknown", (Problem(f"cannot read: {exc}"),))
    except SlicelabError as exc:
        return ValidationReport(str(file), "unknown", (_problem(exc),))
    return validate_bytes(data, offer=offer, source=str(file), max_bytes=max_bytes)


def validate_bytes(data: bytes | str, *, offer: Offer, source: str = "<rspec>",
                   max_bytes: int = MAX_RSPEC_BYTES) -> ValidationReport:
    try:
        root = load_document(data, max_bytes=max_bytes)
    except SlicelabError as exc:
        return ValidationReport(source, "unknown", (_problem(exc),))
    kind = (root.get("type") or "").strip()
    if kind in (SchemaKind.MANIFEST, SchemaKind.ADVERTISEMENT):
        return _schema_report(root, SchemaKind(kind), source)
    issues = _schema_errors(root, SchemaKind.REQUEST) if kind == "request" else []
    if issues:
        return ValidationReport(source, kind, tuple(issues))
    try:
        parsed = parse_request(data, offer=offer, max_bytes=max_bytes)
    except SlicelabError as exc:
        return ValidationReport(source, kind or "unknown", (_problem(exc),))
    topo = parsed.topology
    summary = (f"{len(topo.nodes)} node(s), {len(topo.links)} link(s) for this aggregate; "
               f"{len(parsed.ignored_nodes)} node(s) left to other aggregates")
    return ValidationReport(source, kind, (), parsed.notes, summary)


def _schema_errors(root: Element, kind: SchemaKind) -> list[Problem]:
    return [Problem(i.message, i.line) for i in schema_issues(root, kind=kind)
            if not i.tolerated]


def _schema_report(root: Element, kind: SchemaKind, source: str) -> ValidationReport:
    notes = Notes()
    try:
        check_root(root, kind=kind.value, notes=notes)
    except SlicelabError as exc:
        return ValidationReport(source, kind.value, (_problem(exc),))
    issues = schema_issues(root, kind=kind)
    for issue in issues:
        if issue.tolerated:
            notes.add(f"line {issue.line}: {issue.message}")
    if kind is SchemaKind.ADVERTISEMENT:
        notes.add("advertisement checked against GENI v3 ad.xsd with the ProtoGENI v2 "
                  "ad-common.xsd (the v3 one is not published with it)")
    else:
        notes.add("manifest checked against the ProtoGENI v2 manifest schema read into the "
                  "GENI v3 namespace")
    errors = tuple(Problem(i.message, i.line) for i in issues if not i.tolerated)
    nodes = len(root.findall("{*}node"))
    return ValidationReport(source, kind.value, errors, notes.items(),
                            f"{nodes} node(s), {len(root.findall('{*}link'))} link(s)")


def _problem(exc: SlicelabError) -> Problem:
    line = exc.line if isinstance(exc, InvalidRSpec) else None
    return Problem(str(exc), line)


def render_report(report: ValidationReport) -> str:
    """Plain text for a terminal: verdict, summary, errors, notes."""
    verdict = "valid" if report.ok else "INVALID"
    lines = [f"{report.source}: {verdict} {report.kind} RSpec"]
    if report.summary:
        lines.append(f"  {report.summary}")
    lines += [f"  error: {p.message}" if p.line is None or f"line {p.line}" in p.message
              else f"  error (line {p.line}): {p.message}" for p in report.errors]
    lines += [f"  note: {n}" for n in report.notes]
    return "\n".join(lines) + "\n"
