"""``slicelab image``: import, build, list, show and remove the images slivers boot from."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

from slicelab.sdk import Client
from slicelab.sdk.images import ImageClient, ImageVersion, Kind, Sent, Uploaded

from . import output, session

__all__ = ["app", "node_cache_rows", "show_versions", "upload_with_progress"]

app = typer.Typer(help="Images slivers boot from (content-addressed, sent in chunks).",
                  no_args_is_help=True)
Name = Annotated[str, typer.Argument(help="The image's name.")]


@contextmanager
def _bar(label: str) -> Iterator[Sent]:
    columns = (*Progress.get_default_columns()[:1], BarColumn(), DownloadColumn(),
               TransferSpeedColumn())
    with Progress(*columns, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def advance(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield advance


def upload_with_progress(name: str, source: Path, *, kind: Kind) -> Uploaded:
    """Chunk ``source`` here and send what the server lacks, with a progress bar."""
    with session.connect() as sl, _bar(f"{kind} {name}") as advance:
        return ImageClient.of(sl).upload(name, source, kind=kind, progress=advance)


def _said(done: Uploaded) -> None:
    info = done.info
    output.say(f"{info.kind} [bold]{info.name}[/] version {info.version}: {info.size} bytes "
               f"in {info.chunks} chunks; sent {done.chunks} chunks ({done.sent} bytes)")


@app.command("import")
def import_image(name: Name, source: Annotated[Path, typer.Argument(
        help="A directory or a tarball (.tar, .tar.gz, .tar.xz) with the root file system.")]
                 ) -> None:
    """Register an image: chunked here, only missing chunks sent; run again to resume."""
    _said(upload_with_progress(name, source, kind="image"))


@app.command("build")
def build(recipe: Annotated[str, typer.Argument(help="minimal or debian (debootstrap).")],
          name: Annotated[str | None, typer.Option(help="Register it under this name "
                                                   "(default: the recipe).")] = None) -> None:
    """Build an image at the server and register it (debian takes minutes)."""
    with session.connect() as sl:
        info = ImageClient.of(sl).build(recipe, name=name)
    output.say(f"image [bold]{info.name}[/] version {info.version}: {info.size} bytes "
               f"in {info.chunks} chunks")


def show_versions(found: list[ImageVersion], *, title: str, as_json: bool) -> None:
    if as_json:
        output.print_json([i.model_dump(mode="json") for i in found])
        return
    output.table(title, ["NAME", "VERSION", "KIND", "SIZE", "CHUNKS", "STATE", "REGISTERED"],
                 ([i.name, i.version, i.kind, str(i.size), str(i.chunks), _state(i),
                   output.when(i.registered)] for i in found))


def _state(info: ImageVersion) -> str:
    if info.deprecated:
        return "deprecated"
    return "current" if info.current else ""


@app.command("list")
def list_images(as_json: output.JsonFlag = False) -> None:
    """List the images (every version)."""
    with session.connect() as sl:
        found = ImageClient.of(sl).catalog(kind="image")
    show_versions(found, title="Images", as_json=as_json)


@app.command("show")
def show(name: Name, as_json: output.JsonFlag = False) -> None:
    """Show the versions of an image or file."""
    with session.connect() as sl:
        found = ImageClient.of(sl).versions(name)
    show_versions(found, title=name, as_json=as_json)


@app.command("rm")
def remove(name: Name) -> None:
    """Deprecate an image; it is deleted once no sliver uses it."""
    with session.connect() as sl:
        kept = ImageClient.of(sl).remove(name)
    if kept:
        output.say(f"[bold]{name}[/] is deprecated; kept while slivers use it")
    else:
        output.say(f"[bold]{name}[/] removed")


def node_cache_rows(sl: Client, node: str) -> dict[str, Any]:
    """A node's image cache as its agent reported it, with table rows (for ``node show``)."""
    found = ImageClient.of(sl).node_cache(node)
    cache = found.get("cache") or {}
    downloads = cache.get("downloads", {})
    rows = [[i["id"][:12], str(i.get("tree_bytes", 0)), "yes" if i.get("pinned") else "",
             f"{downloads[i['id']]['percent']}%" if i["id"] in downloads else "done"]
            for i in cache.get("images", [])]
    rows += [[m[:12], "-", "yes", f"{d['percent']}%"] for m, d in downloads.items()
             if m not in {i["id"] for i in cache.get("images", [])}]
    rows += [[m[:12], "-", "", f"error: {text}"] for m, text in cache.get("errors", {}).items()]
    return {**found, "rows": rows}
