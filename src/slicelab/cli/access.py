"""``slicelab exec`` and ``slicelab ssh``: into a sliver, by slice and node name."""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated

import typer

from slicelab.domain.errors import Unavailable

from . import session

__all__ = ["exec_command", "ssh", "ssh_argv"]

SliceRef = Annotated[str, typer.Argument(metavar="PROJECT/SLICE", help="The slice's name.")]
NodeArg = Annotated[str, typer.Argument(metavar="NODE", help="The node's name in the slice.")]


def exec_command(ref: SliceRef, node: NodeArg,
                 command: Annotated[list[str], typer.Argument(metavar="-- CMD...",
                                                              help="The command and its args.")],
                 timeout: Annotated[float, typer.Option(help="Seconds to allow.")] = 30) -> None:
    """Run a command in a sliver; its output and exit code are passed back."""
    with session.connect() as sl:
        result = sl.exec(ref, node, command, timeout=timeout)
    sys.stdout.write(result.stdout)
    sys.stdout.flush()
    sys.stderr.write(result.stderr)
    sys.stderr.flush()
    raise typer.Exit(result.exit_code)


def ssh_argv(host: str, port: int, identity: Path, *, options: Sequence[str] = (),
             command: Sequence[str] = ()) -> list[str]:
    extra = [word for option in options for word in ("-o", option)]
    return ["ssh", "-p", str(port), "-i", str(identity), *extra, f"root@{host}",
            *(["--", *command] if command else [])]


def ssh(ref: SliceRef, node: NodeArg,
        command: Annotated[list[str] | None, typer.Argument(
            metavar="[-- CMD...]", help="Run this instead of a login shell.")] = None,
        identity: Annotated[Path | None, typer.Option(
            "--identity", "-i", help="Private key (default ~/.ssh/id_ed25519).")] = None,
        option: Annotated[list[str] | None, typer.Option(
            "--option", "-o", help="An ssh -o option, e.g. StrictHostKeyChecking=no.")] = None
        ) -> None:
    """Open an SSH session to a sliver, or run a command there (runs OpenSSH's ssh)."""
    with session.connect() as sl:
        sliver = sl.slice_status(ref).sliver(node)
    if not sliver.ssh or not sliver.ssh.get("host") or not sliver.ssh.get("port"):
        raise Unavailable(f"{ref} {node} has no SSH endpoint yet (state "
                          f"{sliver.state or sliver.operational_state})")
    key = identity or Path.home() / ".ssh" / "id_ed25519"
    argv = ssh_argv(str(sliver.ssh["host"]), int(sliver.ssh["port"]), key,
                    options=option or (), command=command or ())
    os.execvp(argv[0], argv)
