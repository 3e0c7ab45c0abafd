"""Test harness: the image router in a real uvicorn server, and a fault-injecting TCP proxy."""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
import socket
import threading
import time
from pathlib import Path

import uvicorn
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from slicelab.domain.errors import SlicelabError
from slicelab.images.http import make_router
from slicelab.images.store import ChunkStore, ImageStore

__all__ = ["FaultProxy", "ImageServer", "make_app", "make_tree"]


def make_app(store: ImageStore, hits: collections.Counter[str]) -> FastAPI:
    """The router under /api/v1, errors as problem+json, chunks sent (by GET or in a
    batch) counted in ``hits``."""
    app = FastAPI()
    app.include_router(make_router(store, served=lambda digest: hits.update([digest])),
                       prefix="/api/v1")

    @app.exception_handler(SlicelabError)
    async def problem(_: Request, exc: SlicelabError) -> JSONResponse:
        body = {"title": exc.title, "status": exc.status, "detail": exc.message,
                "field": exc.field}
        return JSONResponse(body, status_code=exc.status, media_type="application/problem+json")

    @app.middleware("http")
    async def count(request: Request, call_next):  # type: ignore[no-untyped-def]
        if request.method == "GET" and "/chunks/" in request.url.path:
            hits[request.url.path.rsplit("/", 1)[-1]] += 1
        return await call_next(request)

    return app


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ImageServer:
    """An :class:`ImageStore` served by uvicorn in a thread on 127.0.0.1; restartable."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.port = free_port()
        self.hits: collections.Counter[str] = collections.Counter()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.store: ImageStore | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/"

    def start(self) -> None:
        self.store = ImageStore(self.root)
        config = uvicorn.Config(make_app(self.store, self.hits), host="127.0.0.1",
                                port=self.port, log_level="warning", lifespan="off")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("image server did not start")
            time.sleep(0.01)

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=10)
        self._server = self._thread = None


class FaultProxy:
    """A TCP proxy on 127.0.0.1 that cuts each connection after a random few hundred KB
    sent to the client, and sometimes stalls it (sends nothing) for ``stall`` seconds."""

    def __init__(self, upstream_port: int, *, cut_min: int = 200_000, cut_max: int = 600_000,
                 stall_chance: float = 0.0, stall: float = 1.0, seed: int = 7) -> None:
        self.upstream_port = upstream_port
        self.cut = (cut_min, cut_max)
        self.stall_chance, self.stall = stall_chance, stall
        self.port = free_port()
        self.cuts = 0
        self.stalls = 0
        self.bytes_down = 0
        self._random = random.Random(seed)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.Server | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/"

    def __enter__(self) -> FaultProxy:
        self._thread.start()
        self._ready.wait(5)
        return self

    def __exit__(self, *exc: object) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port))
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        for task in asyncio.all_tasks(self._loop):
            task.cancel()
        self._loop.run_until_complete(asyncio.sleep(0))
        self._loop.close()

    async def _handle(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            up_r, up_w = await asyncio.open_connection("127.0.0.1", self.upstream_port)
        except OSError:
            client_w.close()
            return
        budget = self._random.randint(*self.cut)
        upward = asyncio.ensure_future(self._pipe(client_r, up_w))
        try:
            with contextlib.suppress(ConnectionError):
                await self._down(up_r, client_w, budget)
        finally:
            upward.cancel()
            for writer in (client_w, up_w):
                writer.transport.abort()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def _down(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                    budget: int) -> None:
        while data := await reader.read(16384):
            if self._random.random() < self.stall_chance:
                self.stalls += 1
                await asyncio.sleep(self.stall)
            data = data[:budget]
            writer.write(data)
            await writer.drain()
            self.bytes_down += len(data)
            budget -= len(data)
            if budget <= 0:
                self.cuts += 1
                return


def make_tree(root: Path, *, seed: int, files: int = 24, size: int = 200_000) -> Path:
    """Files of random and of compressible bytes, like a small root filesystem."""
    rng = random.Random(seed)
    for i in range(files):
        sub = root / f"usr{i % 3}"
        sub.mkdir(parents=True, exist_ok=True)
        n = rng.randint(size // 2, size * 3 // 2)
        text = b"".join(b"config line %d of file %d\n" % (j, i) for j in range(n // 24))
        body = rng.randbytes(n) if i % 2 else text[:n]
        (sub / f"f{i:03d}").write_bytes(body)
    return root


def corrupt_chunk(store: ChunkStore, digest: str) -> None:
    """Damage the stored frame of ``digest`` in place, in its pack or its own file."""
    place = store.packs.places.get(digest)
    if place is None:
        path = store.chunk_path(digest)
        path.write_bytes(path.read_bytes()[:-3] + b"bad")
        return
    with open(store.packs.root / place.pack, "r+b") as pack:
        pack.seek(place.offset + place.length - 3)
        pack.write(b"bad")
