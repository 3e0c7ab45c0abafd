"""``slicelab member``: the people who use the testbed (adding them is for admins)."""

from __future__ import annotations

from typing import Annotated

import typer

from slicelab.sdk import Member

from . import output, session

__all__ = ["app"]

app = typer.Typer(help="Manage testbed members.", no_args_is_help=True)


def _row(member: Member) -> list[str]:
    lead = "yes" if member.can_lead else "no"
    return [
        member.name,
        member.email,
        ", ".join(member.roles) or "-",
        lead,
        output.day(member.created),
    ]


MEMBERS = output.Listing("Members", ["NAME", "EMAIL", "ROLES", "PI", "SINCE"], _row)


def _roles(*, admin: bool, operator: bool) -> tuple[str, ...]:
    return tuple(role for role, on in (("admin", admin), ("operator", operator)) if on)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="Login name: lowercase letters, digits, '_'.")],
    email: Annotated[str, typer.Option(help="Their email address.")],
    pi: Annotated[bool, typer.Option("--pi", help="May lead (create) projects.")] = False,
    admin: Annotated[bool, typer.Option("--admin", help="Testbed administrator.")] = False,
    operator: Annotated[bool, typer.Option("--operator", help="Runs sites and nodes.")] = False,
    as_json: output.JsonFlag = False,
) -> None:
    """Add a member and print their first API token."""
    with session.connect() as sl:
        made = sl.create_member(
            name, email=email, can_lead=pi, roles=_roles(admin=admin, operator=operator)
        )
        url = sl.url
    if as_json:
        output.print_json(made.to_json())
        return
    output.say(f"added member [bold]{made.member.name}[/]; their API token (shown only once):")
    output.plain(made.token)
    output.plain(f"they sign in with: slicelab login --url {url} --token {made.token}")


@app.command("list")
def list_members(as_json: output.JsonFlag = False) -> None:
    """List members."""
    with session.connect() as sl:
        MEMBERS.show(sl.members(), as_json=as_json)
