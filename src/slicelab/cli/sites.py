"""``slicelab site``: the sites an aggregate's nodes belong to."""

from __future__ import annotations

from typing import Annotated

import typer

from slicelab.sdk.nodes import Site

from . import output, session

__all__ = ["app"]

app = typer.Typer(help="Create and list sites.", no_args_is_help=True)


@app.command("create")
def create(name: Annotated[str, typer.Argument(help="The site's name.")]) -> None:
    """Create a site (operators)."""
    with session.connect() as sl:
        site = sl.create_site(name)
    output.say(f"created site [bold]{site.name}[/] ({site.urn})")


def _row(site: Site) -> list[str]:
    return [site.name, site.urn, output.when(site.created)]


SITES = output.Listing("Sites", ["SITE", "URN", "CREATED"], _row)


@app.command("list")
def list_sites(as_json: output.JsonFlag = False) -> None:
    """List the sites."""
    with session.connect() as sl:
        SITES.show(sl.sites(), as_json=as_json)
