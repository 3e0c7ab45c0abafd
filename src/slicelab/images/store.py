"""The chunk store shared by the image server and the node cache, plus the server catalog.

Layout under the store root::

    chunks/ab/<hash>.zst      one zstd frame per chunk, named by the BLAKE3 of its bytes
    packs/<id>.pack           a node's fetched batches: many chunks' frames in one file
    manifests/<id>.json       canonical manifests, named by their own hash
    uploads/<id>.json         manifests of uploads still waiting for chunks
    catalog.json              name -> version -> {manifest, deprecated}
    tmp/                      files being written (renamed into place when complete)

Every file is written to ``tmp/``, fsynced, renamed into place and its directory fsynced,
so a crash leaves either the old state or the new one.  Every read is verified (a chunk
file served as stored is checked once while it stays unchanged on disk).  Chunks
fetched in a batch may be written with ``sync=False`` and made durable together by
:meth:`ChunkStore.flush` (one ``syncfs``): they are still renamed into place only when
whole and verified, a power cut loses at most the chunks since the last flush, and a chunk
damaged by one fails its check on the next read and is fetched again.
"""

from __future__ import annotations

import ctypes
import json
import os
import threading
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import blake3
import zstandard

from slicelab.domain.errors import Conflict, InvalidInput, NotFound
from slicelab.images.chunker import hash_bytes, is_hash
from slicelab.images.errors import IntegrityError
from slicelab.images.manifest import MAX_CHUNK, Manifest
from slicelab.images.packs import Packs

__all__ = [
    "Catalog",
    "CatalogEntry",
    "ChunkStore",
    "open_frame",
    "ImageStore",
    "UploadStatus",
    "atomic_write",
]


def atomic_write(path: Path, data: bytes, *, tmp_dir: Path, durable: bool = True) -> None:
    """Write ``data`` to ``path`` so that a crash leaves the old file or the whole new one.

    ``durable`` also fsyncs the file and its directory, so the new file survives a power
    cut once this returns (scratch stores that are rebuilt anyway may skip it).
    """
    tmp = tmp_dir / f"{path.name}.{uuid.uuid4().hex}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    if durable:
        _fsync_dir(path.parent)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _syncfs(path: Path) -> None:
    """Flush the file system holding ``path`` (``syncfs(2)``; ``sync(2)`` where missing)."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if not hasattr(libc, "syncfs") or libc.syncfs(fd) != 0:
            os.sync()
    finally:
        os.close(fd)


_Stamp = tuple[int, int, int, int]  # inode, size, mtime_ns, ctime_ns
MAX_CHECKED = 1 << 20  # chunk files remembered as checked (about 150 bytes each)


def _stamp(st: os.stat_result) -> _Stamp:
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _check_hash(value: str) -> None:
    if not is_hash(value):
        raise InvalidInput(f"not a chunk hash: {value!r}", field="hash")



def open_frame(unpacker: zstandard.ZstdDecompressor, digest: str, blob: bytes) -> bytes:
    """A stored chunk's bytes from its zstd frame; raises unless they hash to ``digest``."""
    try:
        data = unpacker.decompress(blob, max_output_size=MAX_CHUNK)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"chunk {digest} is not a valid zstd frame") from exc
    if hash_bytes(data) != digest:
        raise IntegrityError(f"chunk bytes do not hash to {digest}")
    return data

class ChunkStore:
    """Compressed chunks and manifests by hash, written atomically, verified on read."""

    def __init__(self, root: Path, *, level: int = 3, durable: bool = True) -> None:
        self.root = root
        self.tmp = root / "tmp"
        self._level = level
        self.durable = durable
        self._local = threading.local()
        self._checked: dict[str, _Stamp] = {}  # chunk -> file stamp when last checked
        for sub in ("chunks", "manifests", "tmp"):
            (root / sub).mkdir(parents=True, exist_ok=True)
        self._clear_tmp()
        self.packs = Packs(root / "packs", tmp=self.tmp)

    def _clear_tmp(self) -> None:
        for leftover in self.tmp.iterdir():
            leftover.unlink(missing_ok=True)

    def chunk_path(self, digest: str) -> Path:
        _check_hash(digest)
        return self.root / "chunks" / digest[:2] / f"{digest}.zst"

    def has(self, digest: str) -> bool:
        if digest in self.packs.places or self.chunk_path(digest).exists():
            return True
        return self.packs.refresh() and digest in self.packs.places

    def put_pack(self, chunks: list[tuple[str, bytes]]) -> None:
        """Store checked zstd frames (hash, frame) together in one pack file (durable at
        the next :meth:`flush`)."""
        if chunks:
            self.packs.write(chunks, name=f"{uuid.uuid4().hex}.pack")

    def put(self, digest: str, data: bytes, *, sync: bool = True) -> int:
        """Store raw chunk bytes under their hash; returns the stored (compressed) size.

        ``sync=False`` leaves durability to a later :meth:`flush`."""
        if hash_bytes(data) != digest:
            raise IntegrityError(f"chunk bytes do not hash to {digest}")
        blob = zstandard.ZstdCompressor(level=self._level).compress(data)
        return self._write(digest, blob, sync=sync)

    def put_compressed(self, digest: str, blob: bytes, *, sync: bool = True) -> int:
        """Store a zstd frame after checking that it decompresses to bytes with this hash."""
        self._decode(digest, blob)
        return self._write(digest, blob, sync=sync)

    def _write(self, digest: str, blob: bytes, *, sync: bool) -> int:
        path = self.chunk_path(digest)
        if not path.exists():
            path.parent.mkdir(exist_ok=True)
            atomic_write(path, blob, tmp_dir=self.tmp, durable=self.durable and sync)
        return len(blob)

    def flush(self) -> None:
        """Make every chunk written with ``sync=False`` durable (one file system sync)."""
        if self.durable:
            _syncfs(self.root)

    def _decode(self, digest: str, blob: bytes) -> bytes:
        unpacker = getattr(self._local, "unpacker", None)
        if unpacker is None:  # a zstd context is not thread-safe: one per thread
            unpacker = self._local.unpacker = zstandard.ZstdDecompressor()
        return open_frame(unpacker, digest, blob)

    def get(self, digest: str) -> bytes:
        """The chunk's bytes; a chunk that fails its check is deleted and raises."""
        return self._decode_or_drop(digest, self.get_compressed_unchecked(digest))

    def get_compressed(self, digest: str) -> bytes:
        """The stored zstd frame, after checking it (a bad one is deleted and raises).

        A file checked before and not changed since (same inode, size, mtime and ctime)
        is not decompressed and hashed again; the receiver checks every chunk anyway."""
        if digest in self.packs.places:  # a node's packs: checked at every read
            blob = self.get_compressed_unchecked(digest)
            self._decode_or_drop(digest, blob)
            return blob
        try:
            with open(self.chunk_path(digest), "rb") as handle:
                stamp = _stamp(os.fstat(handle.fileno()))
                blob = handle.read()
        except FileNotFoundError:
            raise NotFound(f"no chunk {digest}", field="hash") from None
        if self._checked.get(digest) != stamp or len(blob) != stamp[1]:
            self._decode_or_drop(digest, blob)
            self._remember(digest, stamp)
        return blob

    def _remember(self, digest: str, stamp: _Stamp) -> None:
        if len(self._checked) >= MAX_CHECKED:
            self._checked.clear()
        self._checked[digest] = stamp

    def get_compressed_unchecked(self, digest: str) -> bytes:
        packed = self.packs.read(digest)
        if packed is not None:
            return packed
        try:
            return self.chunk_path(digest).read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no chunk {digest}", field="hash") from None

    def _decode_or_drop(self, digest: str, blob: bytes) -> bytes:
        try:
            return self._decode(digest, blob)
        except IntegrityError:
            self.delete(digest)
            raise

    def verify(self, digest: str) -> bool:
        """Whether the chunk is present and sound; an unsound one is deleted."""
        try:
            self.get(digest)
        except (NotFound, IntegrityError):
            return False
        return True

    def delete(self, digest: str) -> None:
        self.delete_many([digest])

    def delete_many(self, digests: Iterable[str]) -> None:
        """Delete chunks, from their files and packs (a pack's other chunks become files)."""
        doomed = list(digests)
        for digest in doomed:
            self._checked.pop(digest, None)
            self.chunk_path(digest).unlink(missing_ok=True)
        self.packs.drop(doomed, keep=lambda d, blob: self._write(d, blob, sync=False))

    def stored_size(self, digest: str) -> int:
        place = self.packs.places.get(digest)
        if place is not None:
            return place.length
        try:
            return self.chunk_path(digest).stat().st_size
        except FileNotFoundError:
            return 0

    def hashes(self) -> Iterator[str]:
        self.packs.refresh()
        packed = set(self.packs.places)
        yield from packed
        for fan in (self.root / "chunks").iterdir():
            for path in fan.iterdir():
                digest = path.name.removesuffix(".zst")
                if digest not in packed:
                    yield digest

    def usage(self) -> int:
        """Bytes used by chunk, pack and manifest files."""
        total = self.packs.usage()
        for sub in ("chunks", "manifests"):
            total += sum(p.stat().st_size for p in (self.root / sub).rglob("*") if p.is_file())
        return total

    def put_manifest(self, manifest: Manifest) -> str:
        path = self.root / "manifests" / f"{manifest.id}.json"
        if not path.exists():
            atomic_write(path, manifest.to_json(), tmp_dir=self.tmp, durable=self.durable)
        return manifest.id

    def has_manifest(self, manifest_id: str) -> bool:
        _check_hash(manifest_id)
        return (self.root / "manifests" / f"{manifest_id}.json").exists()

    def manifest_bytes(self, manifest_id: str) -> bytes:
        _check_hash(manifest_id)
        try:
            raw = (self.root / "manifests" / f"{manifest_id}.json").read_bytes()
        except FileNotFoundError:
            raise NotFound(f"no manifest {manifest_id}", field="manifest") from None
        if blake3.blake3(raw).hexdigest() != manifest_id:
            self.delete_manifest(manifest_id)
            raise IntegrityError(f"manifest {manifest_id} is corrupt on disk")
        return raw

    def get_manifest(self, manifest_id: str) -> Manifest:
        return Manifest.from_json(self.manifest_bytes(manifest_id), expect_id=manifest_id)

    def delete_manifest(self, manifest_id: str) -> None:
        _check_hash(manifest_id)
        (self.root / "manifests" / f"{manifest_id}.json").unlink(missing_ok=True)

    def manifest_ids(self) -> list[str]:
        return sorted(p.stem for p in (self.root / "manifests").glob("*.json"))

    def read_stream(self, manifest: Manifest) -> Iterator[bytes]:
        """The image's bytes chunk by chunk, each verified, and the whole checked at the end."""
        whole = blake3.blake3()
        for ref in manifest.chunks:
            data = self.get(ref.hash)
            whole.update(data)
            yield data
        if whole.hexdigest() != manifest.hash:
            raise IntegrityError(f"image {manifest.id} does not hash to its manifest")


@dataclass(frozen=True, slots=True)
class CatalogEntry:
    name: str
    version: str
    manifest: str
    deprecated: bool = False


class Catalog:
    """Image name -> version -> manifest id (and a deprecated flag), saved atomically."""

    def __init__(self, path: Path, *, tmp_dir: Path) -> None:
        self._path = path
        self._tmp = tmp_dir
        self._lock = threading.RLock()
        self._data: dict[str, dict[str, dict[str, Any]]] = (
            json.loads(path.read_bytes()) if path.exists() else {}
        )

    def _save(self) -> None:
        raw = json.dumps(self._data, sort_keys=True, indent=1).encode()
        atomic_write(self._path, raw, tmp_dir=self._tmp)

    def register(self, name: str, version: str, manifest_id: str) -> CatalogEntry:
        with self._lock:
            current = self._data.get(name, {}).get(version)
            if current is not None and current["manifest"] != manifest_id:
                raise Conflict(f"image {name} {version} exists with other content", field="version")
            self._data.setdefault(name, {})[version] = {
                "manifest": manifest_id,
                "deprecated": False,
            }
            self._save()
        return self.get(name, version)

    def get(self, name: str, version: str) -> CatalogEntry:
        with self._lock:
            row = self._data.get(name, {}).get(version)
        if row is None:
            raise NotFound(f"no image {name} {version}", field="version")
        return CatalogEntry(name, version, row["manifest"], row["deprecated"])

    def versions(self, name: str) -> list[CatalogEntry]:
        with self._lock:
            if name not in self._data:
                raise NotFound(f"no image {name}", field="name")
            return [self.get(name, v) for v in sorted(self._data[name])]

    def entries(self) -> list[CatalogEntry]:
        with self._lock:
            return [e for name in sorted(self._data) for e in self.versions(name)]

    def set_deprecated(self, name: str, version: str, *, deprecated: bool) -> CatalogEntry:
        with self._lock:
            self.get(name, version)
            self._data[name][version]["deprecated"] = deprecated
            self._save()
        return self.get(name, version)

    def remove(self, name: str, version: str) -> CatalogEntry:
        with self._lock:
            entry = self.get(name, version)
            del self._data[name][version]
            if not self._data[name]:
                del self._data[name]
            self._save()
        return entry

    def manifest_ids(self) -> set[str]:
        return {e.manifest for e in self.entries()}


@dataclass(frozen=True, slots=True)
class UploadStatus:
    id: str
    missing: tuple[str, ...]

    @property
    def complete(self) -> bool:
        return not self.missing


class ImageStore:
    """The server side: chunk store, catalog and resumable uploads.

    An upload starts with its manifest (saved under ``uploads/`` at once, so it outlives a
    restart), accepts chunks in any order, and completes when the last chunk arrives:
    the whole image is then checked against the manifest and entered in the catalog.
    """

    def __init__(self, root: Path, *, durable: bool = True) -> None:
        self.chunks = ChunkStore(root, durable=durable)
        self.catalog = Catalog(root / "catalog.json", tmp_dir=self.chunks.tmp)
        self._uploads = root / "uploads"
        self._uploads.mkdir(exist_ok=True)
        self._lock = threading.RLock()
        self._waiting: dict[str, set[str]] = {}

    def begin_upload(self, raw_manifest: bytes) -> UploadStatus:
        manifest = Manifest.from_json(raw_manifest)
        if manifest.to_json() != raw_manifest:
            raise InvalidInput("manifest is not in canonical form", field="manifest")
        with self._lock:
            if self.chunks.has_manifest(manifest.id):
                self.catalog.register(manifest.name, manifest.version, manifest.id)
                return UploadStatus(manifest.id, ())
            self._check_free(manifest)
            atomic_write(
                self._uploads / f"{manifest.id}.json", raw_manifest, tmp_dir=self.chunks.tmp
            )
            return self._settle(manifest.id)

    def _check_free(self, manifest: Manifest) -> None:
        try:
            entry = self.catalog.get(manifest.name, manifest.version)
        except NotFound:
            return
        if entry.manifest != manifest.id:
            raise Conflict(
                f"image {manifest.name} {manifest.version} exists with other content",
                field="version",
            )

    def upload_status(self, upload_id: str) -> UploadStatus:
        with self._lock:
            if upload_id not in self._waiting and self.chunks.has_manifest(upload_id):
                return UploadStatus(upload_id, ())
            return self._settle(upload_id)

    def _pending_manifest(self, upload_id: str) -> Manifest:
        _check_hash(upload_id)
        path = self._uploads / f"{upload_id}.json"
        try:
            return Manifest.from_json(path.read_bytes(), expect_id=upload_id)
        except FileNotFoundError:
            raise NotFound(f"no upload {upload_id}", field="upload") from None

    def _settle(self, upload_id: str) -> UploadStatus:
        waiting = self._waiting.get(upload_id)
        if waiting is None:
            manifest = self._pending_manifest(upload_id)
            waiting = {h for h in manifest.unique_hashes() if not self.chunks.has(h)}
            self._waiting[upload_id] = waiting
        if not waiting:
            self._finish(upload_id)
        return UploadStatus(upload_id, tuple(sorted(waiting)))

    def _finish(self, upload_id: str) -> None:
        manifest = self._pending_manifest(upload_id)
        try:
            for _ in self.chunks.read_stream(manifest):
                pass
        except IntegrityError:
            self._waiting.pop(upload_id, None)
            raise
        self.chunks.put_manifest(manifest)
        self.catalog.register(manifest.name, manifest.version, manifest.id)
        (self._uploads / f"{upload_id}.json").unlink(missing_ok=True)
        self._waiting.pop(upload_id, None)

    def put_chunk(self, digest: str, data: bytes, *, compressed: bool = False) -> int:
        """Store a chunk (raw or one zstd frame) and complete the uploads it finishes."""
        stored = (
            self.chunks.put_compressed(digest, data)
            if compressed
            else self.chunks.put(digest, data)
        )
        with self._lock:
            done = [
                uid
                for uid, waiting in self._waiting.items()
                if digest in waiting and len(waiting) == 1
            ]
            for upload_id, waiting in self._waiting.items():
                if digest in waiting:
                    waiting.discard(digest)
                    (self._uploads / f"{upload_id}.json").touch(exist_ok=True)
            for upload_id in done:
                self._finish(upload_id)
        return stored

    def missing(self, hashes: list[str]) -> list[str]:
        return [h for h in hashes if not self.chunks.has(h)]

    def pending_uploads(self) -> list[str]:
        """Ids of uploads begun and not complete."""
        return sorted(p.stem for p in self._uploads.glob("*.json"))

    def expire_uploads(self, *, before: float) -> list[str]:
        """Forget uploads last begun, resumed or sent a chunk before ``before`` (Unix time)
        and still not complete; their chunks go at the next garbage collection."""
        gone: list[str] = []
        with self._lock:
            for path in self._uploads.glob("*.json"):
                if path.stat().st_mtime < before:
                    path.unlink(missing_ok=True)
                    self._waiting.pop(path.stem, None)
                    gone.append(path.stem)
        return sorted(gone)

    def delete_image(self, name: str, version: str) -> CatalogEntry:
        entry = self.catalog.remove(name, version)
        if entry.manifest not in self.catalog.manifest_ids():
            self.chunks.delete_manifest(entry.manifest)
        return entry

    def collect_garbage(self) -> int:
        """Delete chunks no catalogued image or open upload uses; returns how many."""
        with self._lock:
            keep: set[str] = set()
            for manifest_id in self.catalog.manifest_ids():
                keep.update(self.chunks.get_manifest(manifest_id).unique_hashes())
            for path in self._uploads.glob("*.json"):
                keep.update(self._pending_manifest(path.stem).unique_hashes())
            doomed = [h for h in self.chunks.hashes() if h not in keep]
            for digest in doomed:
                self.chunks.delete(digest)
        return len(doomed)
