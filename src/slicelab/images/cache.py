"""The node's image cache: fetch what leases need, materialize it, collect garbage.

The cache keeps chunks and manifests in a :class:`ChunkStore` under ``root/store`` and
unpacked images under ``root/trees/<id>`` (the sliver runtime uses these as overlay lower
directories).  ``root/cache.json`` remembers, per image, when it was last used and how
big its tree is; ``root/spool`` holds batch answers while they are read
(:class:`~slicelab.images.fetch.Spool`).  Disk use is held under ``quota`` bytes: past
``high`` of it, images that are not pinned are evicted least recently used first until
use is under ``low``; if even that cannot make room, :class:`CacheFull` says how much
the pinned images hold.
"""

from __future__ import annotations

import asyncio
import heapq
import io
import json
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import zstandard

from slicelab.domain.errors import InvalidInput, NotFound
from slicelab.images.archive import extract_archive
from slicelab.images.errors import CacheFull, IntegrityError
from slicelab.images.fetch import Fetcher, FetchOptions, ProgressFn, open_frame
from slicelab.images.manifest import Manifest
from slicelab.images.store import ChunkStore, atomic_write

__all__ = ["CachedImage", "FetchQueue", "ImageCache", "Quota"]

_MARKER = ".slicelab-image"


@dataclass(frozen=True, slots=True)
class Quota:
    """Disk budget in bytes with high and low watermarks (fractions of ``limit``)."""

    limit: int
    high: float = 0.9
    low: float = 0.7

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high <= 1 or self.limit <= 0:
            raise InvalidInput("need limit > 0 and 0 < low <= high <= 1", field="quota")


@dataclass(frozen=True, slots=True)
class CachedImage:
    id: str
    last_used: float
    tree_bytes: int


class _ChunkReader(io.RawIOBase):
    """A readable file over an iterator of byte strings (the image stream)."""

    def __init__(self, parts: Iterator[bytes]) -> None:
        self._parts = parts
        self._current = memoryview(b"")

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: bytearray | memoryview) -> int:  # type: ignore[override]
        while not self._current:
            try:
                self._current = memoryview(next(self._parts))
            except StopIteration:
                return 0
        size = min(len(buffer), len(self._current))
        buffer[:size] = self._current[:size]
        self._current = self._current[size:]
        return size


class ImageCache:
    """Chunks, manifests and unpacked trees of the images a node needs."""

    def __init__(
        self,
        root: Path,
        *,
        base_url: str,
        quota: Quota,
        options: FetchOptions | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.root = root
        self.store = ChunkStore(root / "store")
        self.quota = quota
        self.fetcher = Fetcher(
            self.store,
            base_url,
            options=options or FetchOptions(),
            transport=transport,
            spool=root / "spool",
        )
        self._clock = clock
        self._counted: tuple[int, int] | None = None  # (store bytes, sink bytes) when scanned
        self._index_path = root / "cache.json"
        self._index: dict[str, dict[str, float]] = (
            json.loads(self._index_path.read_bytes()) if self._index_path.exists() else {}
        )
        (root / "trees").mkdir(exist_ok=True)
        self._sweep_trees()

    # -- bookkeeping -------------------------------------------------------------------

    def _save(self) -> None:
        atomic_write(
            self._index_path,
            json.dumps(self._index, sort_keys=True).encode(),
            tmp_dir=self.store.tmp,
        )

    def _touch(self, image: str, **fields: float) -> None:
        entry = self._index.setdefault(image, {"last_used": 0.0, "tree_bytes": 0})
        entry.update(fields, last_used=self._clock())
        self._save()

    def images(self) -> list[CachedImage]:
        """Known images, least recently used first."""
        rows = [
            CachedImage(i, e["last_used"], int(e["tree_bytes"])) for i, e in self._index.items()
        ]
        return sorted(rows, key=lambda r: (r.last_used, r.id))

    def usage(self, *, fresh: bool = True) -> int:
        """Bytes of chunks, manifests and unpacked trees.  ``fresh=False`` (for reports)
        counts the store's files only once and then adds the chunks written since."""
        written = self.fetcher.sink.written
        if fresh or self._counted is None:
            self._counted = (self.store.usage(), written)
        stored = self._counted[0] + written - self._counted[1]
        return stored + sum(int(e["tree_bytes"]) for e in self._index.values())

    def tree_path(self, image: str) -> Path:
        return self.root / "trees" / image

    def _sweep_trees(self) -> None:
        """Remove half-unpacked trees left by a crash."""
        for path in (self.root / "trees").iterdir():
            if path.name.startswith(".") or not (path / _MARKER).exists():
                shutil.rmtree(path, ignore_errors=True)

    # -- fetching ----------------------------------------------------------------------

    def missing(self, manifest: Manifest) -> dict[str, int]:
        """Chunks (hash -> length) not present and sound; unsound ones are deleted.  Chunks
        this cache received and checked itself are not read again (unpacking checks each
        chunk it reads)."""
        checked = self.fetcher.sink.verified
        return {
            h: n
            for h, n in manifest.unique_hashes().items()
            if not (h in checked and self.store.has(h)) and not self.store.verify(h)
        }

    def _drop_chunk(self, digest: str) -> None:
        self.fetcher.sink.verified.discard(digest)
        self.store.delete(digest)

    def _base_for(self, image: str) -> str | None:
        """The most recently used other image: likely an older version of this one."""
        others = [r.id for r in self.images() if r.id != image]
        return others[-1] if others else None

    async def fetch(
        self,
        image: str,
        *,
        pins: Iterable[str] = (),
        progress: ProgressFn | None = None,
        base: str | None = None,
        unpack: bool = False,
    ) -> Manifest:
        """Make every chunk of ``image`` present and verified, fetching only what is missing.

        ``base`` names a manifest held here that the new one probably shares most chunks
        with (by default the most recently used image); its manifest then travels as a delta.
        With ``unpack``, room is also made for the tree it will be unpacked into (about the
        image's size), so an image that cannot fit fails before its chunks are fetched.
        """
        base = base or self._base_for(image)
        async with self.fetcher.client() as client:
            manifest = await self.fetcher.manifest(client, image, base=base)
        if image not in self._index:
            self._touch(image)
        await asyncio.to_thread(self.fetcher.spool.recover, self.fetcher.sink)
        missing = await asyncio.to_thread(self.missing, manifest)
        needed = sum(missing.values())
        if unpack and not (self.tree_path(image) / _MARKER).exists():
            needed += manifest.size
        await asyncio.to_thread(self.make_room, needed, pins={*pins, image})
        older = await asyncio.to_thread(self._older_version, manifest, base)
        await self.fetcher.chunks(manifest, missing, progress=progress, base=older)
        self._touch(image)
        return manifest

    def _older_version(self, manifest: Manifest, hint: str | None) -> Manifest | None:
        """A version of the same image held here (``hint`` first, else the most recently
        used): changed chunks then travel as deltas against its chunks."""
        held = [r.id for r in reversed(self.images()) if r.id != manifest.id]
        for candidate in ([hint] if hint else []) + held:
            if candidate != manifest.id and self.store.has_manifest(candidate):
                older = self.store.get_manifest(candidate)
                if older.name == manifest.name:
                    return older
        return None

    # -- unpacking ---------------------------------------------------------------------

    async def materialize(
        self,
        image: str,
        *,
        pins: Iterable[str] = (),
        keep_owners: bool = False,
        progress: ProgressFn | None = None,
    ) -> Path:
        """Fetch if needed and unpack ``image`` into its tree; returns the tree's path.

        A chunk found corrupt while unpacking is deleted, fetched again and the unpack
        retried, so damaged bytes never end up in a tree.
        """
        tree = self.tree_path(image)
        if (tree / _MARKER).exists():
            self._touch(image)
            return tree
        for _ in range(3):
            manifest = await self.fetch(image, pins=pins, unpack=True, progress=progress)
            try:
                size = await asyncio.to_thread(self._unpack, manifest, keep_owners=keep_owners)
            except IntegrityError:
                continue
            self._touch(image, tree_bytes=size)
            return tree
        raise IntegrityError(f"image {image} kept failing verification while unpacking")

    def _unpack(self, manifest: Manifest, *, keep_owners: bool) -> int:
        tree = self.tree_path(manifest.id)
        staging = tree.with_name(f".{manifest.id}.{uuid.uuid4().hex}")
        try:
            reader = io.BufferedReader(
                _ChunkReader(self._read_checked(manifest)), buffer_size=1 << 20
            )
            extract_archive(reader, staging, keep_owners=keep_owners)
            (staging / _MARKER).write_text(manifest.id + "\n")
            staging.rename(tree)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return _tree_size(tree)

    def _read_checked(self, manifest: Manifest) -> Iterator[bytes]:
        """The image's bytes chunk by chunk, each checked against its hash (the manifest,
        checked against its id, binds the chunks to the image); a chunk that is gone or
        fails is deleted and raises :class:`IntegrityError`, so it is fetched again."""
        unpacker = zstandard.ZstdDecompressor()
        for ref in manifest.chunks:
            try:
                yield open_frame(unpacker, ref.hash, self.store.get_compressed_unchecked(ref.hash))
            except (NotFound, IntegrityError) as exc:
                self._drop_chunk(ref.hash)
                raise IntegrityError(f"chunk {ref.hash} of image {manifest.id}: {exc}") from exc

    # -- garbage collection ------------------------------------------------------------

    def make_room(self, needed: int, *, pins: Iterable[str]) -> list[str]:
        """Evict unpinned images, least recently used first, if ``needed`` more bytes
        would pass the high watermark; returns the evicted ids."""
        limit = self.quota.limit
        if self.usage() + needed <= self.quota.high * limit:
            return []
        pinned = set(pins)
        self._drop_orphans()
        evicted: list[str] = []
        for row in self.images():
            if self.usage() + needed <= self.quota.low * limit:
                break
            if row.id not in pinned:
                self.evict(row.id)
                evicted.append(row.id)
        self._check_fits(needed)
        return evicted

    def _check_fits(self, needed: int) -> None:
        used = self.usage()
        if used + needed > self.quota.limit:
            raise CacheFull(
                f"image cache needs {needed} more bytes: {used} of {self.quota.limit} are held "
                "by images that running or upcoming leases need",
                field="quota",
            )

    def _referenced(self, images: Iterable[str]) -> set[str]:
        wanted: set[str] = set()
        for image in images:
            if self.store.has_manifest(image):
                wanted.update(self.store.get_manifest(image).unique_hashes())
        return wanted

    def _drop_chunks(self, digests: Iterable[str]) -> None:
        doomed = list(digests)
        self.fetcher.sink.verified.difference_update(doomed)
        self.store.delete_many(doomed)

    def _drop_orphans(self) -> None:
        keep = self._referenced(self._index)
        self._drop_chunks(d for d in list(self.store.hashes()) if d not in keep)

    def evict(self, image: str) -> None:
        """Forget ``image``: its tree, its manifest and the chunks no other image uses."""
        shutil.rmtree(self.tree_path(image), ignore_errors=True)
        own = self._referenced([image])
        self._index.pop(image, None)
        self._save()
        self._drop_chunks(own - self._referenced(self._index))
        self.store.delete_manifest(image)


def _tree_size(tree: Path) -> int:
    return sum(p.lstat().st_size for p in tree.rglob("*"))


class FetchQueue:
    """Images waiting to be fetched, the one needed soonest first.

    ``submit`` again with an earlier time moves an image forward.  Every queued image is
    pinned while others are fetched, so fetching one never evicts another that is due.
    """

    def __init__(self, cache: ImageCache) -> None:
        self._cache = cache
        self._heap: list[tuple[float, str]] = []
        self._due: dict[str, float] = {}

    def submit(self, image: str, *, need_at: float) -> None:
        if need_at < self._due.get(image, float("inf")):
            self._due[image] = need_at
            heapq.heappush(self._heap, (need_at, image))

    def pending(self) -> list[tuple[float, str]]:
        return sorted((t, i) for i, t in self._due.items())

    def pop(self) -> str | None:
        """The image needed soonest, taken off the queue (None when empty)."""
        while self._heap:
            need_at, image = heapq.heappop(self._heap)
            if self._due.get(image) == need_at:
                del self._due[image]
                return image
        return None

    async def run(
        self, *, pins: Iterable[str] = (), progress: ProgressFn | None = None
    ) -> list[str]:
        """Fetch queued images in order of need until the queue is empty."""
        fetched: list[str] = []
        while (image := self.pop()) is not None:
            await self._cache.fetch(image, pins={*pins, *self._due}, progress=progress)
            fetched.append(image)
        return fetched
