"""Images and files in the SDK: import (client-side chunking, resumable), build, list, remove.

::

    with Client(url, token) as sl:
        images = ImageClient.of(sl)
        done = images.upload("tools", Path("tools.tar.gz"), kind="file")
        print(done.info.version, done.sent, "bytes sent")

An upload chunks the tree, tarball or file here (into a local chunk cache), sends the
manifest, then only the chunks the server lacks.  Run it again after an interruption and
it sends only what is still missing.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

import httpx
from pydantic import BaseModel, ConfigDict

from slicelab.domain.errors import InvalidInput, SlicelabError, Unavailable
from slicelab.images.archive import normalize_tarball, write_archive
from slicelab.images.chunker import Piece
from slicelab.images.manifest import Manifest, build_manifest
from slicelab.images.store import ChunkStore

from .client import Client
from .connection import parse
from .problems import raise_for_problem

__all__ = ["ImageClient", "ImageVersion", "Sent", "Uploaded", "prepare"]

Kind = Literal["image", "file"]
Sent = Callable[[int, int], None]  # (bytes sent so far, bytes to send)


class ImageVersion(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    name: str
    version: str
    manifest: str
    kind: str = "image"
    deprecated: bool = False
    current: bool = False
    size: int = 0
    chunks: int = 0
    registered: datetime | None = None


@dataclass(frozen=True, slots=True)
class Uploaded:
    info: ImageVersion
    sent: int      # chunk bytes sent (compressed)
    chunks: int    # chunks sent
    missing: int   # chunks the server lacked when the upload (re)started


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "slicelab" / "chunks"


def _stream_file(source: Path, *, kind: Kind, work: Path) -> Path:
    """The byte stream to chunk: a file as is, a tree or tarball as a deterministic tar."""
    if kind == "file":
        if not source.is_file():
            raise InvalidInput(f"not a file: {source}", field="path")
        return source
    out = work / "stream.tar"
    with out.open("wb") as sink:
        if source.is_dir():
            write_archive(source, sink)
        elif source.is_file():
            with source.open("rb") as tarball:
                normalize_tarball(tarball, sink)
        else:
            raise InvalidInput(f"no such directory or tarball: {source}", field="path")
    return out


def prepare(store: ChunkStore, name: str, source: Path, *, kind: Kind = "image") -> Manifest:
    """Chunk ``source`` into ``store``; the manifest is versioned by its content."""
    def keep(piece: Piece) -> None:
        if not store.has(piece.hash):
            store.put(piece.hash, piece.data)

    with tempfile.TemporaryDirectory(dir=store.tmp) as work:
        stream = _stream_file(source, kind=kind, work=Path(work))
        with stream.open("rb") as data:
            manifest = build_manifest(data, name=name, version="upload", sink=keep)
    final = replace(manifest, version=manifest.hash[:12])
    store.put_manifest(final)
    return final


class ImageClient:
    """The image routes of one server, over an authenticated ``httpx.Client``."""

    def __init__(self, http: httpx.Client, *, cache: Path | None = None) -> None:
        self._http = http
        self._cache = cache or default_cache()

    @classmethod
    def of(cls, client: Client, *, cache: Path | None = None) -> ImageClient:
        return cls(client._conn._http, cache=cache)

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.TransportError as exc:
            raise Unavailable(f"cannot reach the server: {exc}") from exc
        raise_for_problem(response)
        return response.json() if response.content else None

    def catalog(self, *, kind: Kind | None = None) -> list[ImageVersion]:
        params = {"kind": kind} if kind else {}
        return [parse(ImageVersion, i) for i in self._call("GET", "/images", params=params)]

    def versions(self, name: str) -> list[ImageVersion]:
        return [parse(ImageVersion, i) for i in self._call("GET", f"/images/{name}")]

    def show(self, name: str, version: str = "current") -> ImageVersion:
        return parse(ImageVersion, self._call("GET", f"/images/{name}/{version}"))

    def build(self, recipe: str, *, name: str | None = None,
              timeout: float = 3600.0) -> ImageVersion:
        params = {"name": name} if name else {}
        return parse(ImageVersion, self._call("POST", f"/images/{recipe}/build",
                                              params=params, timeout=timeout))

    def remove(self, name: str) -> list[ImageVersion]:
        """Deprecate ``name``; returns the versions kept because live slivers use them."""
        return [parse(ImageVersion, i) for i in self._call("DELETE", f"/images/{name}")]

    def node_cache(self, node: str) -> dict[str, Any]:
        found: dict[str, Any] = self._call("GET", f"/nodes/{node}/images")
        return found

    def upload(self, name: str, source: Path, *, kind: Kind = "image",
               progress: Sent | None = None) -> Uploaded:
        """Chunk ``source`` here and send what the server lacks (resumable)."""
        store = ChunkStore(self._cache, durable=False)
        manifest = prepare(store, name, source, kind=kind)
        started = self._call("POST", "/images/uploads", params={"kind": kind},
                             content=manifest.to_json())
        missing = list(started["missing"])
        sent = self._send(store, missing, progress=progress)
        status = self._call("GET", f"/uploads/{manifest.id}")
        if not status["complete"]:
            raise SlicelabError(f"upload {manifest.id} still lacks {len(status['missing'])} "
                                "chunks; run it again")
        return Uploaded(self.show(name, manifest.version), sent, len(missing), len(missing))

    def _send(self, store: ChunkStore, missing: list[str], *, progress: Sent | None) -> int:
        total = sum(store.stored_size(d) for d in missing)
        sent = 0
        for digest in missing:
            blob = store.get_compressed(digest)
            self._call("PUT", f"/chunks/{digest}", content=blob,
                       headers={"Content-Type": "application/zstd"})
            sent += len(blob)
            if progress is not None:
                progress(sent, total)
        return sent
