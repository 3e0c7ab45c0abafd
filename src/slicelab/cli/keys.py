"""``slicelab key``: the SSH public keys put into your slivers."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from slicelab.domain.errors import InvalidKey
from slicelab.sdk import ApiKey

from . import output, session

__all__ = ["app"]

app = typer.Typer(help="Manage your SSH public keys.", no_args_is_help=True)


def read_key(source: str) -> str:
    """The key text in file ``source``, or on stdin when ``source`` is ``-``."""
    if source == "-":
        return _one_key(sys.stdin.read(), "stdin")
    try:
        text = Path(source).expanduser().read_text()
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise InvalidKey(f"cannot read key file {source}: {reason}", field="key") from exc
    return _one_key(text, source)


def _one_key(text: str, source: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    if len(lines) != 1:
        raise InvalidKey(
            f"{source} has {len(lines)} non-empty lines; give one SSH public key "
            "(e.g. ~/.ssh/id_ed25519.pub)",
            field="key",
        )
    return lines[0]


def _row(key: ApiKey) -> list[str]:
    bits = str(key.bits) if key.bits else "-"
    return [key.id, key.name or "-", key.type, bits, key.fingerprint, output.day(key.created)]


KEYS = output.Listing("SSH keys", ["ID", "NAME", "TYPE", "BITS", "FINGERPRINT", "ADDED"], _row)


@app.command("add")
def add(
    source: Annotated[
        str, typer.Argument(metavar="FILE|-", help="Public key file, or - for stdin.")
    ],
    name: Annotated[str | None, typer.Option(help="A name to tell the key apart.")] = None,
) -> None:
    """Register an SSH public key (e.g. ~/.ssh/id_ed25519.pub)."""
    text = read_key(source)
    with session.connect() as sl:
        key = sl.add_key(text, name=name)
    output.say(f"added {key.type} key {key.id} ({key.fingerprint})")


@app.command("list")
def list_keys(as_json: output.JsonFlag = False) -> None:
    """List your SSH public keys."""
    with session.connect() as sl:
        KEYS.show(sl.keys(), as_json=as_json)


@app.command("rm")
def remove(key_id: Annotated[str, typer.Argument(metavar="ID")]) -> None:
    """Remove one of your SSH public keys."""
    with session.connect() as sl:
        sl.delete_key(key_id)
    output.say(f"removed key {key_id}")
