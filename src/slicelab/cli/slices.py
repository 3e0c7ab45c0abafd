"""``slicelab slice``: slices, the named, leased containers of an experiment."""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from typing import Annotated

import typer

from slicelab.domain.errors import InvalidInput
from slicelab.sdk import Slice

from . import output, session

__all__ = ["app", "parse_time"]

app = typer.Typer(help="Create, renew and delete slices.", no_args_is_help=True)
SliceRef = Annotated[str, typer.Argument(metavar="PROJECT/SLICE", help="The slice's name.")]
Days = Annotated[int | None, typer.Option(min=1, help="Lasting N days from now.")]
Until = Annotated[
    str | None,
    typer.Option(metavar="TIME", help="Lasting until TIME (ISO 8601; UTC unless a zone is given)."),
]


def parse_time(text: str) -> datetime:
    """An ISO 8601 date or time; one without a zone is taken as UTC."""
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError as exc:
        raise InvalidInput(
            f"not an ISO 8601 time: {text!r} (e.g. 2030-01-31T12:00Z)", field="until"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _until(text: str | None) -> datetime | None:
    return parse_time(text) if text is not None else None


def _row(item: Slice) -> list[str]:
    return [item.ref, item.creator or "-", output.when(item.expires)]


SLICES = output.Listing("Slices", ["SLICE", "CREATOR", "EXPIRES"], _row)


def _fields(item: Slice) -> list[tuple[str, str]]:
    members = ", ".join(m.name + (f" ({m.role})" if m.role else "") for m in item.members)
    return [
        ("slice", item.ref),
        ("urn", item.urn),
        ("creator", item.creator or "-"),
        ("created", output.when(item.created)),
        ("expires", output.when(item.expires)),
        ("members", members or "-"),
    ]


@app.command("create")
def create(ref: SliceRef, days: Days = None, until: Until = None) -> None:
    """Create a slice in one of your projects."""
    end = _until(until)
    with session.connect() as sl:
        made = sl.create_slice(ref, days=days, expires=end)
    output.say(f"created slice [bold]{made.ref}[/], expires {output.when(made.expires)}")


@app.command("list")
def list_slices(
    project: Annotated[str | None, typer.Option(help="Only this project's slices.")] = None,
    as_json: output.JsonFlag = False,
) -> None:
    """List the slices you can see."""
    with session.connect() as sl:
        SLICES.show(sl.slices(project=project), as_json=as_json)


@app.command("show")
def show(ref: SliceRef, as_json: output.JsonFlag = False) -> None:
    """Show one slice."""
    with session.connect() as sl:
        item = sl.get_slice(ref)
    output.detail(item, as_json=as_json, title=f"slice {item.ref}", fields=_fields)


@app.command("renew")
def renew(
    ref: SliceRef,
    days: Days = None,
    until: Until = None,
    maximum: Annotated[bool, typer.Option("--max", help="As long as policy allows.")] = False,
) -> None:
    """Extend a slice's lease by N days, to a time, or as far as allowed."""
    if (days is not None) + (until is not None) + maximum != 1:
        raise typer.BadParameter("give exactly one of --days, --until or --max")
    end = _until(until)
    with session.connect() as sl:
        before = sl.get_slice(ref).expires
        after = sl.renew_slice(ref, days=days, until=end, maximum=maximum).expires
    output.say(f"renewed {ref}: now expires {output.when(after)}, {_gain(before, after)}")


def _gain(before: datetime, after: datetime) -> str:
    if after <= before:
        return "no later than before"
    gained = output.relative(after, now=before).removeprefix("in ")
    return ("under a minute" if gained == "now" else gained) + " later than before"


@app.command("delete")
def delete(
    ref: SliceRef,
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
) -> None:
    """Delete a slice and everything in it."""
    if not yes and not sys.stdin.isatty():
        raise InvalidInput(f"not deleting {ref} without --yes (no terminal to ask on)", field="yes")
    if not yes:
        typer.confirm(f"delete slice {ref} and all its slivers?", abort=True, err=True)
    with session.connect() as sl:
        sl.delete_slice(ref)
    output.say(f"deleted slice {ref}")
