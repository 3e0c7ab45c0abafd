"""``slicelab token``: API tokens for scripts and other machines."""

from __future__ import annotations

from typing import Annotated

import typer

from slicelab.sdk import ApiToken

from . import output, session

__all__ = ["app"]

app = typer.Typer(help="Manage your API tokens.", no_args_is_help=True)


def _row(token: ApiToken) -> list[str]:
    return [token.id, token.name, output.day(token.created), output.when(token.expires)]


TOKENS = output.Listing("API tokens", ["ID", "NAME", "CREATED", "EXPIRES"], _row)


@app.command("create")
def create(
    name: Annotated[str, typer.Argument(help="What the token is for.")],
    days: Annotated[int | None, typer.Option(min=1, help="Expire after N days.")] = None,
    as_json: output.JsonFlag = False,
) -> None:
    """Make a new API token; its secret is shown only this once."""
    with session.connect() as sl:
        token = sl.create_token(name, expires_in_days=days)
    if as_json:
        output.print_json(token.to_json())
        return
    output.say(f"token {token.id} ({token.name}) expires {output.when(token.expires)}")
    output.say("its secret, shown only this once:")
    output.plain(token.token or "-")


@app.command("list")
def list_tokens(as_json: output.JsonFlag = False) -> None:
    """List your API tokens (not their secrets)."""
    with session.connect() as sl:
        TOKENS.show(sl.tokens(), as_json=as_json)


@app.command("revoke")
def revoke(token_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Revoke one of your API tokens at once."""
    with session.connect() as sl:
        sl.revoke_token(token_id)
    output.say(f"revoked token {token_id}")
