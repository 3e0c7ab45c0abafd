"""``slicelab resources`` and ``slicelab rspec``: what is free, the advertisement, checking files.

* ``slicelab resources [--from T --until T] [--site S] [--json]`` — a table per site of every
  node's capacity and what is free now or over the window;
* ``slicelab resources advertisement [--xml]`` — the advertisement as JSON, or as the GENI v3
  advertisement RSpec (rendered from the JSON by the function the server uses);
* ``slicelab rspec validate FILE`` — check an RSpec file here, without a server and without
  allocating; exit status 1 when it is invalid.

``resources`` is a group whose callback shows the table when no sub-command is given, so
other modules add sub-commands to :data:`app` (``app.command("find-slot")(...)``).
"""

from __future__ import annotations

import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer

from slicelab.domain.errors import InvalidInput
from slicelab.rspec import build_advertisement, render_report, validate_file
from slicelab.sdk.nodes import NodeResources, ResourcesView, Sizes
from slicelab.services.inventory import advertisement_from_json, aggregate_offer

from . import output, session

__all__ = ["advertisement", "app", "resources", "rspec", "validate"]

app = typer.Typer(help="What the aggregate has and what is free.", invoke_without_command=True)
rspec = typer.Typer(help="GENI RSpec documents.", no_args_is_help=True)
DEFAULT_AUTHORITY = "slicelab"  # as slicelab.settings.Settings


def _time(value: str | None, name: str) -> datetime | None:
    if value is None:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput(f"--{name}: not an ISO 8601 time: {value!r}", field=name) from None
    if moment.tzinfo is None:
        raise InvalidInput(f"--{name} needs a time zone (e.g. 2031-01-01T10:00Z)", field=name)
    return moment


def _sizes(s: Sizes) -> str:
    devices = "".join(f" {n}x{c}" for n, c in sorted(s.devices.items()) if c < 1000)
    return f"{s.cores:g}c {s.memory_mib} MiB {s.disk_gib} GiB{devices}"


def _node_row(n: NodeResources) -> list[str]:
    return [n.name, n.boot_state, n.health, _sizes(n.capacity), _sizes(n.free),
            str(n.uplink_mbps or "-")]


def _show(view: ResourcesView) -> None:
    output.say(f"free from {view.start.isoformat()} until {view.end.isoformat()}")
    if not view.sites:
        output.say("no sites")
    for site in view.sites:
        title = (f"site {site.name}: {site.up}/{site.node_count} up, "
                 f"free {_sizes(site.free)} of {_sizes(site.capacity)}")
        output.table(title, ["NODE", "STATE", "HEALTH", "CAPACITY", "FREE", "UPLINK Mbit/s"],
                     map(_node_row, site.nodes))


@app.callback(invoke_without_command=True)
def resources(ctx: typer.Context,
              start: Annotated[str | None, typer.Option("--from", help="Window start "
                                                        "(ISO 8601 with zone; default now).")
                               ] = None,
              until: Annotated[str | None, typer.Option(help="Window end (ISO 8601).")] = None,
              site: Annotated[str | None, typer.Option(help="Only this site.")] = None,
              as_json: output.JsonFlag = False) -> None:
    """Show per site what every node has and what is free now or over a window."""
    if ctx.invoked_subcommand is not None:
        return
    begin, end = _time(start, "from"), _time(until, "until")
    with session.connect() as sl:
        view = sl.resources(start=begin, until=end, site=site)
    if as_json:
        output.print_json(view.model_dump(mode="json"))
        return
    _show(view)


@app.command("advertisement")
def advertisement(xml: Annotated[bool, typer.Option("--xml", help="The GENI v3 "
                                                    "advertisement RSpec instead of JSON.")
                                 ] = False) -> None:
    """Print the aggregate's advertisement (JSON, or RSpec XML with --xml)."""
    with session.connect() as sl:
        body = sl.advertisement()
    if not xml:
        output.print_json(body)
        return
    generated = datetime.fromisoformat(body["generated"]) if body.get("generated") else None
    sys.stdout.write(build_advertisement(advertisement_from_json(body),
                                         generated=generated).decode())
    sys.stdout.flush()


@rspec.command("validate")
def validate(file: Annotated[Path, typer.Argument(help="The RSpec file to check.")],
             authority: Annotated[str, typer.Option(help="This aggregate's authority (nodes "
                                                    "bound to others are left to them).")
                                  ] = DEFAULT_AUTHORITY) -> None:
    """Check an RSpec file without allocating anything; exit status 1 when invalid."""
    report = validate_file(file, offer=aggregate_offer(authority))
    sys.stdout.write(render_report(report))
    sys.stdout.flush()
    if not report.ok:
        raise typer.Exit(1)
