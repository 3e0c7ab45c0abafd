"""``slicelab file``: upload and list files slivers install (data sets, tool tarballs)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slicelab.sdk.images import ImageClient

from . import output, session
from .images import show_versions, upload_with_progress

__all__ = ["app"]

app = typer.Typer(help="Files installed into slivers (a tar or tar.gz is unpacked at its path).",
                  no_args_is_help=True)


@app.command("upload")
def upload(name: Annotated[str, typer.Argument(help="The file's name (used in 'install').")],
           path: Annotated[Path, typer.Argument(help="The file to upload.")]) -> None:
    """Register a file: chunked here, only missing chunks sent; run again to resume."""
    done = upload_with_progress(name, path, kind="file")
    output.say(f"file [bold]{done.info.name}[/] version {done.info.version}: "
               f"{done.info.size} bytes; sent {done.chunks} chunks ({done.sent} bytes)")


@app.command("list")
def list_files(as_json: output.JsonFlag = False) -> None:
    """List the files (every version)."""
    with session.connect() as sl:
        found = ImageClient.of(sl).catalog(kind="file")
    show_versions(found, title="Files", as_json=as_json)
