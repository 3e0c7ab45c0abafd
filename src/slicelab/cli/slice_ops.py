"""``slicelab slice apply|status|release``: a slice's topology and its slivers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.progress import BarColumn, Progress, TextColumn

from slicelab.domain.errors import InvalidInput, SlicelabError
from slicelab.sdk.nodes import SliceStatus, SliverStatus

from . import output, session
from .diagnosis import explained

__all__ = ["load_topology", "register"]

SliceRef = Annotated[str, typer.Argument(metavar="PROJECT/SLICE", help="The slice's name.")]


def load_topology(path: Path) -> dict[str, Any]:
    """A topology file (YAML or JSON) as a dict."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidInput(f"cannot read {path}: {exc.strerror}", field="file") from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidInput(f"{path} is not valid YAML or JSON: {exc}", field="file") from None
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: a topology is a mapping with 'nodes' and 'links'",
                           field="file")
    return data


def _row(s: SliverStatus) -> list[str]:
    return [s.client_id, s.node, s.state or s.operational_state, ", ".join(s.addresses) or "-",
            s.ssh_command or "-", output.when(s.expires), s.error or ""]


def _show(status: SliceStatus) -> None:
    output.table(f"Slice {status.project}/{status.slice}",
                 ["NODE", "HOST", "STATE", "ADDRESSES", "SSH", "EXPIRES", "ERROR"],
                 map(_row, status.slivers))


def _wait(ref: str, sl: Any, timeout: float) -> SliceStatus:
    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[states]}"))
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(f"starting {ref}", total=None, states="")

        def update(status: SliceStatus) -> None:
            done = sum(s.settled for s in status.slivers)
            states = ", ".join(f"{s.client_id}: {s.state or 'pending'}" for s in status.slivers)
            bar.update(task, total=len(status.slivers) or 1, completed=done, states=states)

        return sl.slice(ref).wait(timeout=timeout, on_progress=update)  # type: ignore[no-any-return]


def apply(ref: SliceRef,
          file: Annotated[Path, typer.Argument(help="Topology file (YAML or JSON).")],
          wait: Annotated[bool, typer.Option(help="Wait until every sliver is ready.")] = False,
          timeout: Annotated[float, typer.Option(help="Seconds to wait.")] = 300) -> None:
    """Make the slice hold exactly the topology in FILE (allocate, provision, start)."""
    topology = load_topology(file)
    with session.connect() as sl, explained():
        status = sl.apply_topology(ref, topology)
        if wait:
            status = _wait(ref, sl, timeout)
    _show(status)
    if status.failed:
        names = ", ".join(s.client_id for s in status.failed)
        raise SlicelabError(f"{len(status.failed)} sliver(s) failed: {names}")


def status(ref: SliceRef, as_json: output.JsonFlag = False) -> None:
    """Each sliver's state, host, addresses, SSH command and error."""
    with session.connect() as sl:
        found = sl.slice_status(ref)
    if as_json:
        output.print_json(found.model_dump(mode="json"))
        return
    _show(found)


def release(ref: SliceRef) -> None:
    """Remove every sliver and link of the slice (the slice itself stays)."""
    with session.connect() as sl:
        sl.release_topology(ref)
    output.say(f"released the slivers of {ref}")


def register(slice_app: typer.Typer) -> None:
    """Add these commands to ``slicelab slice``."""
    slice_app.command("apply")(apply)
    slice_app.command("status")(status)
    slice_app.command("release")(release)
