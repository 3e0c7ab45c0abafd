"""Pack files: many checked chunks in one file, so a node creates a file per batch, not
per chunk (creating a file costs this ext4 200-600 µs of CPU; appending a chunk ~20 µs).

A pack is the batch's plain frames (:mod:`slicelab.images.frames`) one after another,
written under the store's ``tmp/`` and renamed into ``packs/`` whole, so a pack in
``packs/`` is complete unless a power cut hit it before the next sync; its index is
rebuilt from the frame headers when the store opens (a malformed header ends the pack
there), and every read is checked by its reader.  Packs are never rewritten: dropping a
chunk that lives in a pack writes the pack's other chunks as chunk files and then
removes the pack, so a crash in between leaves a chunk twice, never lost.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from slicelab.images.frames import HEADER, MAX_PAYLOAD, FrameKind, pack_frame

__all__ = ["Packs", "Place"]

Keep = Callable[[str, bytes], object]  # writes one chunk as its own file


@dataclass(frozen=True, slots=True)
class Place:
    pack: str
    offset: int
    length: int


class Packs:
    """The packs under ``root``: chunk hash -> where its frame is."""

    def __init__(self, root: Path, *, tmp: Path) -> None:
        self.root, self._tmp = root, tmp
        root.mkdir(parents=True, exist_ok=True)
        self.places: dict[str, Place] = {}
        self._members: dict[str, set[str]] = {}
        self._seen = -1
        self.refresh()

    def refresh(self) -> bool:
        """Read the packs again if the directory changed since; whether it had."""
        stamp = self.root.stat().st_mtime_ns
        if stamp == self._seen:
            return False
        self._seen = stamp
        self.places, self._members = {}, {}
        for path in sorted(self.root.glob("*.pack")):
            self._index(path.name)
        return True

    def _index(self, name: str) -> None:
        members = self._members.setdefault(name, set())
        with open(self.root / name, "rb") as handle:
            size, offset = os.fstat(handle.fileno()).st_size, 0
            while offset + HEADER.size <= size:
                kind, raw, length = HEADER.unpack(os.pread(handle.fileno(), HEADER.size, offset))
                end = offset + HEADER.size + length
                if kind != FrameKind.PLAIN or length > MAX_PAYLOAD or end > size:
                    break  # damaged from here on: those chunks are fetched again
                digest = raw.hex()
                self.places[digest] = Place(name, offset + HEADER.size, length)
                members.add(digest)
                offset = end

    def write(self, chunks: list[tuple[str, bytes]], *, name: str) -> None:
        """One pack of ``chunks`` (hash, checked zstd frame), renamed into place whole."""
        raw = b"".join(pack_frame(FrameKind.PLAIN, d, blob) for d, blob in chunks)
        tmp = self._tmp / name
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(raw)
            os.replace(tmp, self.root / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        self._seen = self.root.stat().st_mtime_ns  # our own change: no need to read again
        offset, members = 0, self._members.setdefault(name, set())
        for digest, blob in chunks:
            offset += HEADER.size
            self.places[digest] = Place(name, offset, len(blob))
            members.add(digest)
            offset += len(blob)

    def read(self, digest: str) -> bytes | None:
        """The chunk's frame, or None if no pack holds it (any longer)."""
        place = self.places.get(digest)
        if place is None:
            return None
        try:
            with open(self.root / place.pack, "rb") as handle:
                blob = os.pread(handle.fileno(), place.length, place.offset)
        except FileNotFoundError:
            self._forget(place.pack)
            return None
        return blob if len(blob) == place.length else None

    def drop(self, digests: Iterable[str], *, keep: Keep) -> None:
        """Remove ``digests`` from the packs: every pack holding one of them has its other
        chunks written out with ``keep`` and is then deleted."""
        doomed = {d for d in digests if d in self.places}
        for pack in {self.places[d].pack for d in doomed}:
            for digest in sorted(self._members.get(pack, set()) - doomed):
                blob = self.read(digest)
                if blob is not None:
                    keep(digest, blob)
            self._forget(pack)
            (self.root / pack).unlink(missing_ok=True)
            self._seen = self.root.stat().st_mtime_ns

    def _forget(self, pack: str) -> None:
        for digest in self._members.pop(pack, set()):
            if self.places.get(digest, Place(pack, 0, 0)).pack == pack:
                self.places.pop(digest, None)

    def usage(self) -> int:
        return sum(p.stat().st_size for p in self.root.glob("*.pack"))
