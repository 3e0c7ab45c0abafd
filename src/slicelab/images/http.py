"""HTTP interface of the image store: a FastAPI router to mount (with authentication).

Chunks and manifests are immutable and named by their hash, so they are served with
``ETag`` = hash and ``Cache-Control: public, max-age=31536000, immutable``.  Chunks
travel as one zstd frame (``application/zstd``); manifests as canonical JSON, zstd-encoded
when the client accepts it.  ``GET /manifests/{id}?base={older id}`` sends the manifest
compressed against an older one the client holds (header ``X-Slicelab-Manifest-Base``
says the base was used; without it the reply is the plain manifest).  Errors are raised
from :mod:`slicelab.domain.errors`.
"""

from __future__ import annotations

from typing import Annotated

import zstandard
from fastapi import APIRouter, Request, Response
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from slicelab.domain.errors import PayloadTooLarge
from slicelab.images.manifest import BASE_HEADER, MAX_CHUNK, MAX_MANIFEST_BYTES, encode_delta
from slicelab.images.store import CatalogEntry, ImageStore, UploadStatus

__all__ = ["IMMUTABLE", "ZSTD", "make_router"]

ZSTD = "application/zstd"
IMMUTABLE = "public, max-age=31536000, immutable"
_MAX_FRAME = MAX_CHUNK + MAX_CHUNK // 64 + 1024


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


class Deprecation(BaseModel):
    deprecated: bool


def _image(entry: CatalogEntry) -> ImageOut:
    return ImageOut(name=entry.name, version=entry.version, manifest=entry.manifest,
                    deprecated=entry.deprecated)


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


def make_router(store: ImageStore) -> APIRouter:
    """Routes for images, manifests, chunks and uploads over ``store``."""
    router = APIRouter(tags=["images"])
    _catalog_routes(router, store)
    _manifest_routes(router, store)
    _chunk_routes(router, store)
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
        blob = encode_delta(store.chunks.manifest_bytes(manifest_id),
                            store.chunks.manifest_bytes(base))
        return Response(blob, media_type=ZSTD, headers=headers)


def _chunk_routes(router: APIRouter, store: ImageStore) -> None:
    @router.head("/chunks/{digest}")
    def has_chunk(digest: str) -> Response:
        size = store.chunks.stored_size(digest)
        if not size:
            return Response(status_code=404)
        return Response(headers={**_immutable(f'"{digest}"'), "Content-Type": ZSTD,
                                 "Content-Length": str(size)})

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


def _upload_routes(router: APIRouter, store: ImageStore) -> None:
    @router.post("/uploads", response_model=UploadOut, status_code=201)
    async def begin_upload(request: Request) -> UploadOut:
        raw = await _read_body(request, limit=MAX_MANIFEST_BYTES)
        return _upload(await run_in_threadpool(store.begin_upload, raw))

    @router.get("/uploads/{upload_id}", response_model=UploadOut)
    def upload_status(upload_id: str) -> UploadOut:
        return _upload(store.upload_status(upload_id))


