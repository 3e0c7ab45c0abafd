"""``slicelab login`` and ``slicelab whoami``: who the command line acts as."""

from __future__ import annotations

from typing import Annotated

import typer

from slicelab.sdk import Member

from . import output, session

__all__ = ["login", "member_fields", "whoami"]


def login(
    url: Annotated[str, typer.Option(help="The slicelab server, e.g. http://127.0.0.1:8470.")],
    token: Annotated[str, typer.Option(help="Your API token.")],
) -> None:
    """Check a token against the server and save it for later commands."""
    credentials = session.Login(url=url.rstrip("/"), token=token)
    with session.connect(credentials) as sl:
        me = sl.whoami()
    path = session.save_login(credentials)
    output.say(f"logged in to {credentials.url} as [bold]{me.name}[/] (saved to {path})")


def whoami(as_json: output.JsonFlag = False) -> None:
    """Show the member the saved token belongs to."""
    with session.connect() as sl:
        me = sl.whoami()
    output.detail(me, as_json=as_json, title=f"member {me.name}", fields=member_fields)


def member_fields(member: Member) -> list[tuple[str, str]]:
    return [
        ("name", member.name),
        ("email", member.email),
        ("roles", ", ".join(member.roles) or "-"),
        ("can lead projects", "yes" if member.can_lead else "no"),
        ("created", output.when(member.created)),
    ]
