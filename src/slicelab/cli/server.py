"""``slicelab server`` and ``slicelab admin``: run a clearinghouse and set it up."""

from __future__ import annotations

import socket
from typing import Annotated, Any

import typer

from slicelab.domain.errors import Unavailable

from . import output

__all__ = ["DEFAULT_PORT", "admin", "listen", "server"]

DEFAULT_PORT = 8470
admin = typer.Typer(help="Set up a slicelab server.", no_args_is_help=True)
Db = Annotated[
    str | None,
    typer.Option(
        metavar="PATH",
        help="SQLite file or database URL (default: under "
        "$XDG_DATA_HOME/slicelab, or $SLICELAB_DATABASE_URL).",
    ),
]


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (0: any free port); raises if it cannot."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # Accepted connections need TCP_NODELAY: without it every kept-alive request after the
    # first waits ~40 ms for a delayed ACK (agent polls, image batches, uploads). Linux
    # copies it from the listening socket; asyncio also sets it on every accepted socket,
    # but only on sockets that name their protocol (proto 0 is skipped).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
        sock.listen(128)
    except OSError as exc:
        sock.close()
        raise Unavailable(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def _url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def _build_app(db: str | None) -> Any:
    from slicelab.bootstrap import build_app
    from slicelab.settings import Settings

    return build_app(Settings.load(db=db))


def server(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port (0: any free).")] = (
        DEFAULT_PORT
    ),
    db: Db = None,
) -> None:
    """Run the slicelab server (clearinghouse API) until interrupted."""
    import uvicorn

    sock = listen(host, port)
    try:
        app = _build_app(db)
        output.plain(f"slicelab server listening on {_url(sock)} (Ctrl-C to stop)")
        uvicorn.Server(uvicorn.Config(app, log_level="warning", timeout_graceful_shutdown=2)).run(
            sockets=[sock]
        )
    except KeyboardInterrupt:
        output.plain("slicelab server stopped")
    finally:
        sock.close()


@admin.command("init")
def init(
    db: Db = None,
    name: Annotated[str, typer.Option(help="The first admin's member name.")] = "admin",
    email: Annotated[str | None, typer.Option(help="The first admin's email.")] = None,
    url: Annotated[str, typer.Option(help="The server's URL, for the login line printed.")] = (
        f"http://127.0.0.1:{DEFAULT_PORT}"
    ),
    new_token: Annotated[
        bool, typer.Option("--new-token", help="The admin exists already: give it a new token.")
    ] = False,
) -> None:
    """Create the database and its first admin; print the admin's API token."""
    from slicelab.bootstrap import init_admin

    if email:
        token = init_admin(db=db, name=name, email=email, new_token=new_token)
    else:
        token = init_admin(db=db, name=name, new_token=new_token)
    output.say(f"created admin [bold]{name}[/]; API token (shown only once):")
    output.plain(token)
    output.say("sign in with:")
    output.plain(f"slicelab login --url {url} --token {token}")
