"""Publishing an image to a server: chunk it, then send only the chunks it lacks."""

from __future__ import annotations

from pathlib import Path

import httpx

from slicelab.domain.errors import Unavailable
from slicelab.images.archive import ArchiveOptions, write_archive
from slicelab.images.chunker import DEFAULT_PARAMS, ChunkParams, Piece
from slicelab.images.manifest import Manifest, build_manifest
from slicelab.images.store import ChunkStore

__all__ = ["add_directory", "add_file", "push_image"]


def add_file(store: ChunkStore, path: Path, *, name: str, version: str,
             params: ChunkParams = DEFAULT_PARAMS) -> Manifest:
    """Chunk a file (an image stream, e.g. a tarball already made deterministic) into ``store``."""

    def keep(piece: Piece) -> None:
        store.put(piece.hash, piece.data)

    with path.open("rb") as stream:
        manifest = build_manifest(stream, name=name, version=version, params=params, sink=keep)
    store.put_manifest(manifest)
    return manifest


def add_directory(store: ChunkStore, source: Path, *, name: str, version: str,
                  work: Path, options: ArchiveOptions | None = None) -> Manifest:
    """Archive a directory deterministically (into ``work``) and chunk it into ``store``."""
    archive = work / f"{name}-{version}.tar"
    with archive.open("wb") as out:
        write_archive(source, out, options=options or ArchiveOptions())
    try:
        return add_file(store, archive, name=name, version=version)
    finally:
        archive.unlink(missing_ok=True)


def push_image(store: ChunkStore, manifest: Manifest, *, client: httpx.Client) -> int:
    """Upload ``manifest`` and the chunks the server lacks; returns chunk bytes sent."""
    response = client.post("uploads", content=manifest.to_json())
    response.raise_for_status()
    sent = 0
    for digest in response.json()["missing"]:
        blob = store.get_compressed(digest)
        client.put(f"chunks/{digest}", content=blob,
                   headers={"Content-Type": "application/zstd"}).raise_for_status()
        sent += len(blob)
    status = client.get(f"uploads/{manifest.id}")
    status.raise_for_status()
    if not status.json()["complete"]:
        raise Unavailable(f"upload {manifest.id} still lacks chunks after sending them")
    return sent
