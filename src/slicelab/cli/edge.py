"""The process edge of the command line: every failure becomes one line on stderr.

:class:`Group` is the root command's class. It runs the command and turns what escapes
into ``error: <detail>`` and an exit code: 2 for usage errors, 1 for everything else.
An unexpected exception (a bug) prints one line and a hint; with ``SLICELAB_DEBUG=1`` the
traceback follows.
"""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Sequence
from typing import Any

import httpx
import typer
from typer.core import TyperGroup

from slicelab.domain.errors import SlicelabError

from .output import error_line

__all__ = ["DEBUG_ENV", "Group", "exit_code_for"]

DEBUG_ENV = "SLICELAB_DEBUG"
USAGE = 2
FAILURE = 1


def _typer(exc: typer.TyperException) -> int:
    """A usage error (exit code 2) names the command's help; an empty one was the help."""
    message = exc.format_message()
    ctx = getattr(exc, "ctx", None)
    if exc.exit_code == USAGE and ctx is not None:
        if message:
            error_line(f"error: {message} (see '{ctx.command_path} --help')")
        return USAGE
    error_line(f"error: {message}")
    return exc.exit_code


def _bug(exc: BaseException) -> int:
    if os.environ.get(DEBUG_ENV):
        traceback.print_exception(exc, file=sys.stderr)
    name = type(exc).__name__
    error_line(f"error: unexpected {name}: {exc} (this is a bug in slicelab; "
               f"re-run with {DEBUG_ENV}=1 for the traceback)")
    return FAILURE


def exit_code_for(exc: BaseException) -> int:
    """Report ``exc`` on stderr in one line; return the exit code to use."""
    if isinstance(exc, typer.TyperException):
        return _typer(exc)
    if isinstance(exc, typer.Abort):
        error_line("error: aborted")
        return FAILURE
    if isinstance(exc, KeyboardInterrupt):
        error_line("error: interrupted")
        return 130
    if isinstance(exc, SlicelabError):
        error_line(f"error: {exc}")
        return FAILURE
    if isinstance(exc, httpx.HTTPError):
        error_line(f"error: HTTP request failed: {exc}")
        return FAILURE
    return _bug(exc)


class Group(TyperGroup):
    """The root group; see the module docstring."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        try:
            result = super().main(args=args, prog_name=prog_name or "slicelab",
                                  complete_var=complete_var, standalone_mode=False, **extra)
        except Exception as exc:  # the process edge
            sys.exit(exit_code_for(exc))
        except KeyboardInterrupt as exc:
            sys.exit(exit_code_for(exc))
        sys.exit(result if isinstance(result, int) else 0)
