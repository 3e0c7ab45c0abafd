"""``slicelab site``: the sites an aggregate's nodes belong to."""

from __future__ import annotations

from typing import Annotated

import typer

from . import output, session

__all__ = ["app"]

app = typer.Typer(help="Create and list sites.", no_args_is_help=True)


@app.command("create")
def create(name: Annotated[str, typer.Argument(help="The site's name.")]) -> None:
    """Create a site (operators)."""
    with session.connect() as sl:
        site = sl.create_site(name)
    output.say(f"created site [bold]{site.name}[/] ({site.urn})")


@app.command("list")
def list_sites(as_json: output.JsonFlag = False) -> None:
    """List the sites."""
    with session.connect() as sl:
        found = sl.sites()
    if as_json:
        output.print_json([s.model_dump(mode="json") for s in found])
        return
    output.table("Sites", ["SITE", "URN", "CREATED"],
                 ([s.name, s.urn, output.when(s.created)] for s in found))
