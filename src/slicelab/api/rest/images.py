"""The image and file routes: ``/api/v1/images...`` for people, ``/agent/v1/store`` for nodes.

Under ``/api/v1`` (bearer token):

* ``GET /images[?kind=image|file]``, ``GET /images/{name}``, ``GET /images/{name}/{version}``
  list and show (members and nodes);
* ``POST /images/{recipe}/build[?name=]`` builds ``minimal`` or ``debian`` at the server,
  ``POST /images/uploads?kind=image|file`` starts or resumes an upload of a manifest,
  ``PUT /chunks/{hash}`` sends a chunk, ``GET /uploads/{id}`` says what is still missing,
  ``DELETE /images/{name}`` deprecates a name (deleted once no live sliver uses it)
  (admins, operators and PIs);
* ``GET /manifests/{id}``, ``GET|HEAD /chunks/{hash}``, ``POST /chunks/missing``,
  ``POST /chunks/batch`` (many chunks in one streamed response): the content-addressed
  store itself (:func:`slicelab.images.http.make_router`);
* ``GET /nodes/{name}/images``: a node's image cache as its agent last reported it.

Under ``/agent/v1/store`` (signed by the node key): the same store, read only, and
``POST /agent/v1/store/cache`` where the agent reports its cache.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, FastAPI, Request
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from slicelab.domain.errors import InvalidInput, PermissionDenied
from slicelab.domain.nodes import Node
from slicelab.domain.roles import Caller
from slicelab.images.http import make_router
from slicelab.images.manifest import MAX_MANIFEST_BYTES
from slicelab.images.store import atomic_write
from slicelab.services.images import (
    ImageInfo,
    ImageService,
    authorize_images,
    images_in_use,
    service_at,
)

from ..agent.channel import NodeDep
from ..agent.state import brief_caller
from ..deps import CallerDep, UowDep

__all__ = ["IMAGE_DIR", "STORE_PREFIX", "image_service", "install_images"]

STORE_PREFIX = "/agent/v1/store"
IMAGE_DIR = "imagestore"
_READS = frozenset({"GET", "HEAD"})
_READING_POSTS = ("/chunks/missing", "/chunks/batch")


def image_service(request: Request) -> ImageService:
    service: ImageService = request.app.state.image_service
    return service


ServiceDep = Annotated[ImageService, Depends(image_service)]
BriefCaller = Annotated[Caller, Depends(brief_caller)]


class ImageInfoOut(BaseModel):
    name: str
    version: str
    manifest: str
    kind: str
    deprecated: bool
    current: bool
    size: int
    chunks: int
    registered: datetime
    files: int = Field(0, description="legacy: the number of chunks")
    bytes: int = Field(0, description="legacy: the size in bytes")

    @classmethod
    def of(cls, info: ImageInfo) -> ImageInfoOut:
        return cls(
            name=info.name,
            version=info.version,
            manifest=info.manifest,
            kind=info.kind,
            deprecated=info.deprecated,
            current=info.current,
            size=info.size,
            chunks=info.chunks,
            files=info.chunks,
            bytes=info.size,
            registered=datetime.fromtimestamp(info.registered, UTC),
        )


class UploadStarted(BaseModel):
    id: str
    complete: bool
    missing: list[str]


class NodeCacheOut(BaseModel):
    node: str
    reported: datetime | None
    cache: dict[str, Any]


def _by_method(request: Request, caller: BriefCaller) -> None:
    write = request.method not in _READS and not request.url.path.endswith(_READING_POSTS)
    authorize_images(caller, write=write)


async def _node_reads(request: Request, node: NodeDep) -> Node:  # no worker thread
    if request.method not in _READS and not request.url.path.endswith(_READING_POSTS):
        raise PermissionDenied("nodes may only read the image store")
    return node


def _people_routes(router: APIRouter) -> None:
    @router.get("/images", summary="List images and files")
    def list_images(
        caller: BriefCaller, service: ServiceDep, kind: Literal["image", "file"] | None = None
    ) -> list[ImageInfoOut]:
        authorize_images(caller, write=False)
        return [ImageInfoOut.of(i) for i in service.entries(kind=kind)]

    @router.get("/images/{name}", summary="The versions of an image or file")
    def versions(name: str, caller: BriefCaller, service: ServiceDep) -> list[ImageInfoOut]:
        authorize_images(caller, write=False)
        return [ImageInfoOut.of(i) for i in service.versions(name)]

    @router.get("/images/{name}/{version}", summary="One version ('current' for the current)")
    def show(name: str, version: str, caller: BriefCaller, service: ServiceDep) -> ImageInfoOut:
        authorize_images(caller, write=False)
        return ImageInfoOut.of(service.show(name, None if version == "current" else version))

    @router.post(
        "/images/{recipe}/build",
        status_code=201,
        summary="Build an image at the server: minimal or debian (debootstrap)",
    )
    async def build(
        recipe: str, caller: BriefCaller, service: ServiceDep, name: str | None = None
    ) -> ImageInfoOut:
        authorize_images(caller, write=True)
        return ImageInfoOut.of(await run_in_threadpool(service.build, recipe, name=name))

    @router.post(
        "/images/uploads",
        status_code=201,
        response_model=UploadStarted,
        summary="Start or resume an upload: the body is the canonical manifest",
    )
    async def begin(
        request: Request,
        caller: BriefCaller,
        service: ServiceDep,
        kind: Literal["image", "file"] = "image",
    ) -> UploadStarted:
        authorize_images(caller, write=True)
        raw = await _body(request)
        status = await run_in_threadpool(service.begin_upload, raw, kind=kind)
        return UploadStarted(id=status.id, complete=status.complete, missing=list(status.missing))

    @router.delete("/images/{name}", summary="Deprecate a name; it goes once unused")
    def remove(
        name: str, uow: UowDep, caller: CallerDep, service: ServiceDep
    ) -> list[ImageInfoOut]:
        authorize_images(caller, write=True)
        used = images_in_use(uow, now=datetime.now(UTC))
        return [ImageInfoOut.of(i) for i in service.remove(name, in_use=used)]

    @router.get("/nodes/{name}/images", summary="A node's image cache and downloads")
    def node_cache(name: str, uow: UowDep, caller: CallerDep, service: ServiceDep) -> NodeCacheOut:
        authorize_images(caller, write=False)
        node = uow.aggregate.nodes.by_name(name)
        return _cache_out(service, node)


async def _body(request: Request) -> bytes:
    body = bytearray()
    async for part in request.stream():
        body += part
        if len(body) > MAX_MANIFEST_BYTES:
            raise InvalidInput("manifest over the size limit", field="body")
    return bytes(body)


def _cache_file(service: ImageService, node: Node) -> Path:
    return service.root / "nodes" / f"{node.id}.json"


def _cache_out(service: ImageService, node: Node) -> NodeCacheOut:
    try:
        doc = json.loads(_cache_file(service, node).read_bytes())
    except FileNotFoundError:
        return NodeCacheOut(node=node.name, reported=None, cache={})
    return NodeCacheOut(
        node=node.name, reported=datetime.fromtimestamp(doc["at"], UTC), cache=doc["cache"]
    )


def _agent_routes(router: APIRouter) -> None:
    @router.post("/cache", status_code=204, summary="The agent reports its image cache")
    async def report_cache(request: Request, node: NodeDep, service: ServiceDep) -> None:
        try:
            cache = json.loads(await request.body())
        except ValueError:
            raise InvalidInput("the cache report is not JSON", field="body") from None
        if not isinstance(cache, dict):
            raise InvalidInput("the cache report must be an object", field="body")
        raw = json.dumps({"at": datetime.now(UTC).timestamp(), "cache": cache}).encode()
        path = _cache_file(service, node)
        path.parent.mkdir(exist_ok=True)
        await run_in_threadpool(
            atomic_write, path, raw, tmp_dir=service.store.chunks.tmp, durable=False
        )


def install_images(app: FastAPI, *, api: APIRouter) -> ImageService:
    """Mount the image routes on ``api`` (people) and under ``/agent/v1/store`` (nodes).

    Call after :func:`slicelab.api.agent.state.install_aggregate`: the store lives in the
    aggregate's data dir, beside the node secret.
    """
    root = aggregate_state_root(app) / IMAGE_DIR
    service = service_at(root)
    app.state.image_service = service
    people = APIRouter(tags=["images"])
    _people_routes(people)
    api.include_router(people)
    api.include_router(
        make_router(service.store), dependencies=[Depends(_by_method)], include_in_schema=False
    )
    nodes = APIRouter(tags=["node channel"])
    _agent_routes(nodes)
    app.include_router(nodes, prefix=STORE_PREFIX)
    app.include_router(
        make_router(service.store),
        prefix=STORE_PREFIX,
        dependencies=[Depends(_node_reads)],
        include_in_schema=False,
    )
    return service


def aggregate_state_root(app: FastAPI) -> Path:
    """The aggregate's data dir (where its image registry and secret live)."""
    return Path(app.state.aggregate.images.root).parent
