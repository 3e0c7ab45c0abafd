"""How the command line shows things: Rich tables for people, plain JSON for scripts.

Times are shown in UTC with a relative hint (``2030-01-08 12:00 UTC (in 6 days)``).
Nothing but the JSON document goes to stdout when ``--json`` is given.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, Generic, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table
from rich.text import Text

__all__ = [
    "JsonFlag",
    "Listing",
    "day",
    "detail",
    "error_line",
    "key_values",
    "plain",
    "print_json",
    "relative",
    "say",
    "table",
    "when",
]

JsonFlag = Annotated[
    bool, typer.Option("--json", help="Print plain JSON for scripts instead of a table.")
]

M = TypeVar("M", bound=BaseModel)

_UNITS = (
    ("year", 365 * 86400),
    ("month", 30 * 86400),
    ("day", 86400),
    ("hour", 3600),
    ("minute", 60),
)


def _stdout() -> Console:
    return Console(file=sys.stdout, highlight=False, soft_wrap=True)


def say(text: str) -> None:
    """One line for people on stdout (Rich markup allowed)."""
    _stdout().print(text)


def plain(text: str) -> None:
    """One line on stdout exactly as given (secrets, commands to copy)."""
    sys.stdout.write(text + "\n")
    sys.stdout.flush()


def error_line(text: str) -> None:
    """One plain line on stderr."""
    sys.stderr.write(text.rstrip("\n") + "\n")
    sys.stderr.flush()


def print_json(data: Any) -> None:
    """``data`` as a JSON document on stdout, and nothing else."""
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n")
    sys.stdout.flush()


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[str]]) -> None:
    """A Rich table on stdout; says so plainly when there are no rows."""
    rows = list(rows)
    if not rows:
        say(f"no {title.lower() if title else 'entries'}")
        return
    out = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        out.add_column(column, overflow="fold")
    for row in rows:
        out.add_row(*(Text(cell) for cell in row))
    _stdout().print(out)


def key_values(title: str, pairs: Iterable[tuple[str, str]]) -> None:
    """A two-column table of one object's fields."""
    out = Table(title=title, title_justify="left", show_header=False)
    out.add_column(style="bold")
    out.add_column(overflow="fold")
    for key, value in pairs:
        out.add_row(key, Text(value))
    _stdout().print(out)


@dataclass(frozen=True)
class Listing(Generic[M]):
    """How a list command shows its items: a table of ``columns``, one ``row`` an item."""

    title: str
    columns: Sequence[str]
    row: Callable[[M], Sequence[str]]

    def show(self, items: Iterable[M], *, as_json: bool, title: str | None = None) -> None:
        """A JSON list for scripts, else the table (``title`` replaces the usual one)."""
        items = list(items)
        if as_json:
            print_json([item.model_dump(mode="json") for item in items])
            return
        table(title or self.title, self.columns, (self.row(item) for item in items))


def detail(
    item: M, *, as_json: bool, title: str, fields: Callable[[M], Iterable[tuple[str, str]]]
) -> None:
    """A show command's output: the JSON document for scripts, else its ``fields``."""
    if as_json:
        print_json(item.model_dump(mode="json"))
        return
    key_values(title, fields(item))


def relative(moment: datetime, *, now: datetime | None = None) -> str:
    """``in 6 days``, ``3 hours ago``, ``now``: the largest unit that fits, rounded."""
    seconds = (moment - (now or datetime.now(UTC))).total_seconds()
    for unit, size in _UNITS:
        if abs(seconds) >= size:
            count = int(abs(seconds) / size + 0.5)
            text = f"{count} {unit}{'s' if count != 1 else ''}"
            return f"in {text}" if seconds > 0 else f"{text} ago"
    return "now"


def when(moment: datetime | None, *, now: datetime | None = None) -> str:
    """``2030-01-08 12:00 UTC (in 6 days)``; ``-`` when there is no time."""
    if moment is None:
        return "-"
    utc = moment.astimezone(UTC)
    return f"{utc:%Y-%m-%d %H:%M} UTC ({relative(utc, now=now)})"


def day(moment: datetime | None) -> str:
    """Just the date, for narrow columns."""
    return "-" if moment is None else f"{moment.astimezone(UTC):%Y-%m-%d}"
