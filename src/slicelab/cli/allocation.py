"""``slicelab slice allocate|provision|start|stop|restart|delete-slivers|leases|lease-renew``,
``slicelab project quota`` and ``slicelab site limits``: leases and the GENI lifecycle."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from slicelab.domain.errors import InvalidInput
from slicelab.sdk.leases import Allocated, Leases, SliceLease
from slicelab.sdk.nodes import SliceStatus

from . import output, session
from .diagnosis import explained
from .slice_ops import load_topology

__all__ = ["read_request", "register", "register_limits"]

SliceRef = Annotated[str, typer.Argument(metavar="PROJECT/SLICE", help="The slice's name.")]
RSpecOpt = Annotated[Path | None, typer.Option("--rspec", help="A GENI v3 request RSpec.")]
TopologyOpt = Annotated[Path | None, typer.Option("--topology", help="A topology file.")]
Time = Annotated[datetime | None, typer.Option(help="A time, e.g. 2030-01-01T10:00+00:00.")]
Span = Annotated[str | None, typer.Option(help="A duration: 90m, 2h, 1d.")]


def read_request(
    rspec: Path | None, topology: Path | None
) -> tuple[dict[str, Any] | None, bytes | None]:
    """The topology (dict) or RSpec (bytes) named by exactly one of the two options."""
    if (rspec is None) == (topology is None):
        raise InvalidInput("give exactly one of --rspec FILE or --topology FILE", field="file")
    if topology is not None:
        return load_topology(topology), None
    assert rspec is not None
    try:
        return None, rspec.read_bytes()
    except OSError as exc:
        raise InvalidInput(f"cannot read {rspec}: {exc.strerror}", field="rspec") from None


def _aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.astimezone()  # a time without zone is local time
    return value


def _show(status: SliceStatus) -> None:
    output.table(
        f"Slice {status.project}/{status.slice}",
        ["NODE", "HOST", "ALLOCATION", "OPERATIONAL", "EXPIRES", "ERROR"],
        [
            [
                s.client_id,
                s.node,
                s.allocation_state,
                s.operational_state,
                output.when(s.expires),
                s.error or "",
            ]
            for s in status.slivers
        ],
    )


def _show_allocated(done: Allocated) -> None:
    lease = done.lease
    output.key_values(
        f"Lease {lease.id}",
        [
            ("slice", lease.slice),
            ("start", lease.start.isoformat()),
            ("expires", lease.end.isoformat()),
        ],
    )
    _show(done.status)


def allocate(
    ref: SliceRef,
    rspec: RSpecOpt = None,
    topology: TopologyOpt = None,
    start: Time = None,
    end: Time = None,
    duration: Span = None,
    manifest_out: Annotated[
        Path | None, typer.Option("--manifest-out", help="Write the manifest RSpec here.")
    ] = None,
) -> None:
    """Allocate slivers for a lease (now, or from --start), without provisioning them."""
    data, xml = read_request(rspec, topology)
    with session.connect() as client, explained():
        done = Leases(client).allocate(
            ref, topology=data, rspec=xml, start=_aware(start), end=_aware(end), duration=duration
        )
    _show_allocated(done)
    if manifest_out is not None and done.manifest is not None:
        manifest_out.write_text(done.manifest, encoding="utf-8")
        output.say(f"manifest written to {manifest_out}")


def provision(ref: SliceRef) -> None:
    """Provision the allocated slivers (at the lease's start, if that is later)."""
    with session.connect() as client:
        _show(Leases(client).provision(ref))


def _operate(action: str) -> Callable[[str], None]:
    def command(ref: SliceRef) -> None:
        with session.connect() as client:
            _show(Leases(client).operate(ref, action))

    command.__doc__ = f"{action.capitalize()} every sliver of the slice."
    return command


def delete_slivers(ref: SliceRef) -> None:
    """Delete every sliver of the slice and release its leases."""
    with session.connect() as client:
        Leases(client).delete(ref)
    output.say(f"deleted the slivers of {ref}")


def leases(ref: SliceRef, as_json: output.JsonFlag = False) -> None:
    """The slice's leases, each sliver with its expiry."""
    with session.connect() as client:
        found = Leases(client).leases(ref)
    LEASES.show(found, as_json=as_json, title=f"Leases of {ref}")


def _lease_row(lease: SliceLease) -> list[str]:
    slivers = ", ".join(s.client_id for s in lease.slivers)
    return [lease.id, lease.start.isoformat(), lease.end.isoformat(), slivers]


LEASES = output.Listing("Leases", ["LEASE", "START", "EXPIRES", "SLIVERS"], _lease_row)


def lease_renew(
    ref: SliceRef,
    by: Span = None,
    until: Time = None,
    maximum: Annotated[bool, typer.Option("--max", help="As long as allowed.")] = False,
) -> None:
    """Renew the slice's leases by a duration, until a time, or as long as policy allows."""
    with session.connect() as client:
        found = Leases(client).renew(ref, by=by, until=_aware(until), maximum=maximum)
    for x in found:
        output.say(f"lease {x.lease_id} renewed until {x.end.isoformat()} (asked: {x.requested})")


def register(slice_app: typer.Typer) -> None:
    """Add these commands to ``slicelab slice``."""
    slice_app.command("allocate")(allocate)
    slice_app.command("provision")(provision)
    for action in ("start", "stop", "restart"):
        slice_app.command(action)(_operate(action))
    slice_app.command("delete-slivers")(delete_slivers)
    slice_app.command("leases")(leases)
    slice_app.command("lease-renew")(lease_renew)


Count = Annotated[int | None, typer.Option(min=0)]


def quota(
    project: Annotated[str, typer.Argument(help="The project.")],
    cores: Annotated[float | None, typer.Option(min=0)] = None,
    memory_mib: Count = None,
    slivers: Count = None,
    concurrent_leases: Count = None,
    longest_lease: Span = None,
    book_ahead: Span = None,
) -> None:
    """Set a project's quota (admins and operators); unnamed limits are lifted."""
    limits = {
        "cores": cores,
        "memory_mib": memory_mib,
        "slivers": slivers,
        "concurrent_leases": concurrent_leases,
        "longest_lease": longest_lease,
        "book_ahead": book_ahead,
    }
    with session.connect() as client:
        found = Leases(client).set_quota(project, **limits)
    output.key_values(f"Quota of {project}", [(k, str(v)) for k, v in found.items()])


def limits(
    site: Annotated[str, typer.Argument(help="The site.")],
    slivers_per_slice: Count = None,
    cores_per_sliver: Annotated[float | None, typer.Option(min=0)] = None,
    memory_mib_per_sliver: Count = None,
    longest_lease: Span = None,
    book_ahead: Span = None,
    one_sliver_per_slice_per_node: bool = False,
) -> None:
    """Set a site's limits on every slice (admins and operators)."""
    values = {
        "slivers_per_slice": slivers_per_slice,
        "cores_per_sliver": cores_per_sliver,
        "memory_mib_per_sliver": memory_mib_per_sliver,
        "longest_lease": longest_lease,
        "book_ahead": book_ahead,
        "one_sliver_per_slice_per_node": one_sliver_per_slice_per_node,
    }
    with session.connect() as client:
        found = Leases(client).set_site_limits(site, **values)
    output.key_values(f"Limits of site {site}", [(k, str(v)) for k, v in found.items()])


def register_limits(project_app: typer.Typer, site_app: typer.Typer) -> None:
    """Add ``project quota`` and ``site limits``."""
    project_app.command("quota")(quota)
    site_app.command("limits")(limits)
