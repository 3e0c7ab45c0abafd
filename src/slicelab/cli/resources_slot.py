"""``slicelab resources find-slot``: the earliest window where a request fits."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import typer

from slicelab.sdk.leases import Leases

from . import output, session
from .allocation import RSpecOpt, TopologyOpt, read_request
from .diagnosis import explained

__all__ = ["find_slot", "register"]


def find_slot(duration: Annotated[str, typer.Option(help="How long: 90m, 3h, 2d.")],
              topology: TopologyOpt = None, rspec: RSpecOpt = None,
              after: Annotated[datetime | None, typer.Option(
                  help="Not before this time.")] = None,
              as_json: output.JsonFlag = False) -> None:
    """The earliest window where the topology or RSpec fits for --duration."""
    data, xml = read_request(rspec, topology)
    if after is not None and after.tzinfo is None:
        after = after.astimezone()
    with session.connect() as client, explained():
        slot = Leases(client).find_slot(duration=duration, topology=data, rspec=xml,
                                        after=after)
    if as_json:
        output.print_json(slot.model_dump(mode="json"))
        return
    output.key_values("Earliest slot", [("start", slot.start.isoformat()),
                                        ("end", slot.end.isoformat()),
                                        *sorted(slot.hosts.items())])


def register(resources_app: typer.Typer) -> None:
    """Add ``find-slot`` to ``slicelab resources``."""
    resources_app.command("find-slot")(find_slot)
