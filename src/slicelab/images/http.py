"""HTTP interface of the image store: a FastAPI router to mount (with authentication).

Chunks and manifests are immutable and named by their hash, so they are served with
``ETag`` = hash and ``Cache-Control: public, max-age=31536000, immutable``.  Chunks
travel as one zstd frame (``application/zstd``); manifests as canonical JSON, zstd-encoded
when the client accepts it.  ``GET /manifests/{id}?base={older id}`` sends the manifest
compressed against an older one the client holds (header ``X-Slicelab-Manifest-Base``
says the base was used; without it the reply is the plain manifest).

``POST /chunks/batch`` ``{hashes, manifest?, base?}`` streams many chunks in one response
(:mod:`slicelab.images.frames`), each as its stored zstd frame, never recompressed; with
``manifest`` (the image the chunks belong to) and ``base`` (an older manifest the client
holds) a chunk goes as a delta against the base chunks at its place
(:mod:`slicelab.images.delta`) when that is smaller.  Errors are raised from
:mod:`slicelab.domain.errors`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Annotated

import zstandard
from fastapi import APIRouter, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from slicelab.domain.errors import NotFound, PayloadTooLarge
from slicelab.images.delta import delta_bases, encode_chunk, first_refs
from slicelab.images.errors import IntegrityError
from slicelab.images.frames import BATCH_TYPE, FrameKind, pack_frame
from slicelab.images.manifest import (
    BASE_HEADER,
    MAX_CHUNK,
    MAX_MANIFEST_BYTES,
    ChunkRef,
    Manifest,
    encode_delta,
)
from slicelab.images.store import CatalogEntry, ImageStore, UploadStatus

__all__ = ["IMMUTABLE", "MAX_BATCH", "ZSTD", "make_router"]

ZSTD = "application/zstd"
IMMUTABLE = "public, max-age=31536000, immutable"
_MAX_FRAME = MAX_CHUNK + MAX_CHUNK // 64 + 1024
MAX_BATCH = 4096
_FLUSH = 1024 * 1024  # bytes of frames per worker-thread call and per write
_Hash = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Served = Callable[[str], None]
Bases = Callable[[str], tuple[ChunkRef, ...]]


class ImageOut(BaseModel):
    name: str
    version: str
    manifest: str
    deprecated: bool


class UploadOut(BaseModel):
    id: str
    complete: bool
    missing: list[str]


class HashList(BaseModel):
    hashes: list[Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]] = Field(max_length=1_000_000)


class BatchIn(BaseModel):
    hashes: list[_Hash] = Field(min_length=1, max_length=MAX_BATCH)
    manifest: _Hash | None = None
    base: _Hash | None = None


class Deprecation(BaseModel):
    deprecated: bool


def _image(entry: CatalogEntry) -> ImageOut:
    return ImageOut(
        name=entry.name, version=entry.version, manifest=entry.manifest, deprecated=entry.deprecated
    )


def _upload(status: UploadStatus) -> UploadOut:
    return UploadOut(id=status.id, complete=status.complete, missing=list(status.missing))


async def _read_body(request: Request, *, limit: int) -> bytes:
    """The request body, streamed, refusing more than ``limit`` bytes."""
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body over {limit} bytes", field="body")
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > limit:
            raise PayloadTooLarge(f"body over {limit} bytes", field="body")
    return bytes(body)


def _fresh(request: Request, etag: str) -> bool:
    wanted = request.headers.get("if-none-match", "")
    return etag in [tag.strip() for tag in wanted.split(",")]


def _immutable(etag: str) -> dict[str, str]:
    return {"ETag": etag, "Cache-Control": IMMUTABLE}


def make_router(store: ImageStore, *, served: Served | None = None) -> APIRouter:
    """Routes for images, manifests, chunks and uploads over ``store``; ``served`` (for
    metrics and tests) hears the hash of every chunk a batch sends."""
    router = APIRouter(tags=["images"])
    _catalog_routes(router, store)
    _manifest_routes(router, store)
    _chunk_routes(router, store)
    _batch_routes(router, _Batcher(store, served or (lambda _: None)))
    _upload_routes(router, store)
    return router


def _catalog_routes(router: APIRouter, store: ImageStore) -> None:
    @router.get("/images", response_model=list[ImageOut])
    def list_images() -> list[ImageOut]:
        return [_image(e) for e in store.catalog.entries()]

    @router.get("/images/{name}", response_model=list[ImageOut])
    def list_versions(name: str) -> list[ImageOut]:
        return [_image(e) for e in store.catalog.versions(name)]

    @router.get("/images/{name}/{version}", response_model=ImageOut)
    def show_image(name: str, version: str) -> ImageOut:
        return _image(store.catalog.get(name, version))

    @router.put("/images/{name}/{version}/deprecated", response_model=ImageOut)
    def deprecate(name: str, version: str, body: Deprecation) -> ImageOut:
        return _image(store.catalog.set_deprecated(name, version, deprecated=body.deprecated))

    @router.delete("/images/{name}/{version}", status_code=204)
    def delete_image(name: str, version: str) -> Response:
        store.delete_image(name, version)
        return Response(status_code=204)


def _manifest_routes(router: APIRouter, store: ImageStore) -> None:
    @router.get("/manifests/{manifest_id}")
    def get_manifest(manifest_id: str, request: Request, base: str | None = None) -> Response:
        if base is not None and store.chunks.has_manifest(base):
            return _manifest_delta(manifest_id, base, request)
        zstd = "zstd" in request.headers.get("accept-encoding", "")
        etag = f'"{manifest_id}.zst"' if zstd else f'"{manifest_id}"'
        headers = {**_immutable(etag), "Vary": "Accept-Encoding"}
        if _fresh(request, etag) and store.chunks.has_manifest(manifest_id):
            return Response(status_code=304, headers=headers)
        raw = store.chunks.manifest_bytes(manifest_id)
        if zstd:
            raw = zstandard.ZstdCompressor(level=9).compress(raw)
            headers["Content-Encoding"] = "zstd"
        return Response(raw, media_type="application/json", headers=headers)

    def _manifest_delta(manifest_id: str, base: str, request: Request) -> Response:
        etag = f'"{manifest_id}.{base}"'
        headers = {**_immutable(etag), BASE_HEADER: base}
        if _fresh(request, etag) and store.chunks.has_manifest(manifest_id):
            return Response(status_code=304, headers=headers)
        blob = encode_delta(
            store.chunks.manifest_bytes(manifest_id), store.chunks.manifest_bytes(base)
        )
        return Response(blob, media_type=ZSTD, headers=headers)


def _chunk_routes(router: APIRouter, store: ImageStore) -> None:
    @router.head("/chunks/{digest}")
    def has_chunk(digest: str) -> Response:
        size = store.chunks.stored_size(digest)
        if not size:
            return Response(status_code=404)
        return Response(
            headers={**_immutable(f'"{digest}"'), "Content-Type": ZSTD, "Content-Length": str(size)}
        )

    @router.get("/chunks/{digest}")
    def get_chunk(digest: str, request: Request) -> Response:
        etag = f'"{digest}"'
        if _fresh(request, etag) and store.chunks.has(digest):
            return Response(status_code=304, headers=_immutable(etag))
        blob = store.chunks.get_compressed(digest)
        return Response(blob, media_type=ZSTD, headers=_immutable(etag))

    @router.put("/chunks/{digest}", status_code=201)
    async def put_chunk(digest: str, request: Request) -> dict[str, int]:
        compressed = request.headers.get("content-type", "").startswith(ZSTD)
        body = await _read_body(request, limit=_MAX_FRAME if compressed else MAX_CHUNK)
        stored = await run_in_threadpool(store.put_chunk, digest, body, compressed=compressed)
        return {"stored": stored}

    @router.post("/chunks/missing")
    def missing_chunks(body: HashList) -> dict[str, list[str]]:
        return {"missing": store.missing(body.hashes)}


class _Batcher:
    """Frames for a chunk batch: stored frames as they are, or deltas where smaller."""

    def __init__(self, store: ImageStore, served: Served) -> None:
        self.chunks = store.chunks
        self._served = served
        self.manifest = lru_cache(maxsize=16)(self._manifest)

    def _manifest(self, manifest_id: str) -> tuple[Manifest, dict[str, ChunkRef]]:
        manifest = self.chunks.get_manifest(manifest_id)
        return manifest, first_refs(manifest)

    def check(self, body: BatchIn) -> None:
        absent = [h for h in body.hashes if not self.chunks.has(h)]
        if absent:
            raise NotFound(f"no chunk {absent[0]} (and {len(absent) - 1} more)", field="hashes")

    def _bases(self, body: BatchIn) -> Bases:
        if body.manifest is None or body.base is None or body.base == body.manifest:
            return lambda _: ()
        if not (self.chunks.has_manifest(body.manifest) and self.chunks.has_manifest(body.base)):
            return lambda _: ()
        refs, old = self.manifest(body.manifest)[1], self.manifest(body.base)[0]
        return lambda digest: delta_bases(refs[digest], old) if digest in refs else ()

    def frame(self, digest: str, bases: tuple[ChunkRef, ...]) -> bytes:
        stored = self.chunks.get_compressed(digest)
        if bases and all(self.chunks.has(b.hash) for b in bases):
            parts = [self.chunks.get(b.hash) for b in bases]
            delta = encode_chunk(self.chunks.get(digest), parts)
            if len(delta) < len(stored):
                return pack_frame(FrameKind.DELTA, digest, delta)
        return pack_frame(FrameKind.PLAIN, digest, stored)

    def fill(self, digests: list[str], start: int, bases: Bases) -> tuple[bytes, int]:
        """Frames of ``digests[start:]`` up to about ``_FLUSH`` bytes, and where to go on."""
        out = bytearray()
        index = start
        while index < len(digests) and len(out) < _FLUSH:
            digest = digests[index]
            index += 1
            try:
                out += self.frame(digest, bases(digest))
            except (NotFound, IntegrityError):
                continue  # gone or damaged since the check: the client asks again
            self._served(digest)
        return bytes(out), index

    def begin(self, body: BatchIn) -> _Batch:
        """Check the batch and make its first part (one worker-thread call for a batch
        that fits in one part, as a capped node's do)."""
        self.check(body)
        batch = _Batch(list(dict.fromkeys(body.hashes)), self._bases(body))
        batch.first, batch.next = self.fill(batch.digests, 0, batch.bases)
        return batch

    async def rest(self, batch: _Batch) -> AsyncIterator[bytes]:
        """The batch's parts, the first already made; each further one in a worker thread."""
        yield batch.first
        while batch.next < len(batch.digests):
            part, batch.next = await run_in_threadpool(
                self.fill, batch.digests, batch.next, batch.bases
            )
            if part:
                yield part


@dataclass(slots=True)
class _Batch:
    digests: list[str]
    bases: Bases
    first: bytes = b""
    next: int = 0


def _batch_routes(router: APIRouter, batcher: _Batcher) -> None:
    @router.post("/chunks/batch")
    async def chunk_batch(body: BatchIn) -> Response:
        batch = await run_in_threadpool(batcher.begin, body)
        if batch.next >= len(batch.digests):  # whole: sent with its length, not chunked
            return Response(batch.first, media_type=BATCH_TYPE)
        return StreamingResponse(batcher.rest(batch), media_type=BATCH_TYPE)


def _upload_routes(router: APIRouter, store: ImageStore) -> None:
    @router.post("/uploads", response_model=UploadOut, status_code=201)
    async def begin_upload(request: Request) -> UploadOut:
        raw = await _read_body(request, limit=MAX_MANIFEST_BYTES)
        return _upload(await run_in_threadpool(store.begin_upload, raw))

    @router.get("/uploads/{upload_id}", response_model=UploadOut)
    def upload_status(upload_id: str) -> UploadOut:
        return _upload(store.upload_status(upload_id))
