"""Fetching chunks and manifests over HTTP: retries, a bandwidth cap and progress.

Made for nodes whose uplink drops and stalls: every request is retried with capped
exponential backoff and jitter after a dropped connection, a refused one, a stall past
the read timeout, a server error or bytes that fail their hash.  Chunks come in batches
(``POST chunks/batch``: one streamed response of many chunks), read as fast as they arrive
into a spool file (:class:`Spool`); then each chunk is verified and renamed into place,
and a file system sync every few seconds makes them durable.  A fetch killed before it
stored what it read leaves the spool, which the next start stores, so an interruption
costs at most what was on the wire.  A bandwidth cap paces the *requests*: one batch at a
time, asked for only when the cap allows its bytes, so nothing waits unread in kernel
buffers.  A chunk that changed since a version the node holds may come as a delta against
the old chunks at its place (:mod:`slicelab.images.delta`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpcore
import httpx
import zstandard

from slicelab.domain.errors import NotFound, SlicelabError, Unavailable
from slicelab.images.delta import decode_chunk, delta_bases, first_refs
from slicelab.images.errors import IntegrityError
from slicelab.images.frames import Frame, FrameKind, FrameReader
from slicelab.images.manifest import BASE_HEADER, ChunkRef, Manifest, decode_delta
from slicelab.images.store import ChunkStore, open_frame

__all__ = [
    "Batch",
    "ChunkSink",
    "FetchOptions",
    "Fetcher",
    "Progress",
    "ProgressFn",
    "RetryPolicy",
    "Spool",
    "TokenBucket",
    "large_read_transport",
    "open_frame",
    "plan_batches",
]

FLUSH_EVERY = 5.0  # seconds between file system syncs while chunks arrive


@dataclass(frozen=True, slots=True)
class Progress:
    """How far a fetch is: bytes of the image present, of ``total``."""

    image: str
    done: int
    total: int

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0

    def __str__(self) -> str:
        return f"fetching image {self.image[:12]} {self.fraction:.0%}"


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """Capped exponential backoff with full jitter."""

    attempts: int = 60
    base_delay: float = 0.2
    max_delay: float = 20.0

    def delay(self, attempt: int) -> float:
        return random.uniform(0, min(self.max_delay, self.base_delay * 2**attempt))


class TokenBucket:
    """A byte-rate cap shared by every request of a fetcher (``rate`` bytes per second).

    Up to ``burst`` bytes may pass at once; a larger take runs the bucket into debt and
    waits once until the debt is paid, so a caller sleeps once per request."""

    def __init__(
        self, *, rate: float, burst: int, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("rate and burst must be positive")
        self.rate, self.burst, self._clock = rate, burst, clock
        self._tokens = float(burst)
        self._stamp = clock()
        self._lock = asyncio.Lock()

    def _refill(self) -> None:
        now = self._clock()
        self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
        self._stamp = now

    async def take(self, amount: int) -> None:
        """Wait until ``amount`` bytes may pass."""
        async with self._lock:
            self._refill()
            self._tokens -= amount
            if self._tokens < 0:
                await asyncio.sleep(-self._tokens / self.rate)

    def settle(self, taken: int, used: int) -> None:
        """Correct a take of ``taken`` bytes that turned out to be ``used`` bytes."""
        self._refill()
        self._tokens = min(self.burst, self._tokens + taken - used)


@dataclass(frozen=True, slots=True)
class FetchOptions:
    """Parallel requests, a bandwidth cap (bytes/s, None for none), timeouts, retries and
    how many chunks (by count and by bytes) one batch request asks for."""

    parallel: int = 4
    rate: float | None = None
    burst: int = 256 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 15.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    batch_bytes: int = 4 * 1024 * 1024
    batch_chunks: int = 256
    batch_seconds: float = 0.5

    @property
    def batch_limit(self) -> int:
        """Bytes per batch: under a bandwidth cap ``batch_seconds`` worth (at least 128 KiB),
        so requests come about once a ``batch_seconds`` and each is asked for only when
        the cap allows its bytes."""
        if self.rate is None:
            return self.batch_bytes
        return min(self.batch_bytes, max(128 * 1024, int(self.rate * self.batch_seconds)))


READ_BYTES = 1 << 20  # bytes asked of the socket per read of a response


class _LargeReadStream(httpcore.AsyncNetworkStream):
    """A connection whose reads ask for at least :data:`READ_BYTES` (httpcore asks for
    64 KiB, and every read costs the client stack tens of microseconds)."""

    def __init__(self, inner: httpcore.AsyncNetworkStream) -> None:
        self._inner = inner

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return await self._inner.read(max(max_bytes, READ_BYTES), timeout)

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        await self._inner.write(buffer, timeout)

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: Any, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.AsyncNetworkStream:
        return _LargeReadStream(await self._inner.start_tls(ssl_context, server_hostname, timeout))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _LargeReads(httpcore.AsyncNetworkBackend):
    """A network backend whose connections read in large pieces."""

    def __init__(self, inner: httpcore.AsyncNetworkBackend) -> None:
        self._inner = inner

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Any = None,
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_tcp(
            host, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )
        return _LargeReadStream(stream)

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Any = None
    ) -> httpcore.AsyncNetworkStream:
        stream = await self._inner.connect_unix_socket(
            path, timeout=timeout, socket_options=socket_options
        )
        return _LargeReadStream(stream)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


def large_read_transport(**kwargs: Any) -> httpx.AsyncHTTPTransport:
    """httpx's transport (``kwargs`` as for it), reading responses in large pieces.

    httpx has no option for the read size, so the pool's network backend is wrapped; if
    a later httpx lays its pool out differently, the transport is returned as it is."""
    transport = httpx.AsyncHTTPTransport(**kwargs)
    pool = getattr(transport, "_pool", None)
    inner = getattr(pool, "_network_backend", None)
    if isinstance(inner, httpcore.AsyncNetworkBackend):
        pool._network_backend = _LargeReads(inner)  # type: ignore[union-attr]
    return transport


class _Retryable(Exception):
    """A response that is worth asking again (5xx, 429)."""


_RETRYABLE = (httpx.TransportError, IntegrityError, _Retryable)


class ChunkSink:
    """Checks received chunks and writes them into a :class:`ChunkStore`, cheaply.

    One zstd context is reused for every chunk; each chunk is written under the store's
    ``tmp/`` and renamed into place whole (durable at the next :meth:`ChunkStore.flush`).
    ``verified`` holds the chunks checked here since the sink was made, so a cache need
    not hash them again before unpacking; ``written`` counts the bytes of chunk files
    written."""

    def __init__(self, store: ChunkStore) -> None:
        self.store = store
        self.verified: set[str] = set()
        self.written = 0
        self._unpacker = zstandard.ZstdDecompressor()
        self._packer = zstandard.ZstdCompressor(level=3)
        self._fans: set[str] = set()
        self._tmp = os.fspath(store.tmp)
        self._tag = uuid.uuid4().hex[:12]

    def put_compressed(self, digest: str, blob: bytes) -> None:
        open_frame(self._unpacker, digest, blob)
        self._write(digest, blob)

    def check(self, digest: str, blob: bytes) -> None:
        """Raise :class:`IntegrityError` unless ``blob`` is the zstd frame of ``digest``."""
        open_frame(self._unpacker, digest, blob)

    def put_pack(self, chunks: list[tuple[str, bytes]]) -> None:
        """Checked frames (hash, frame) written together as one pack file."""
        self.store.put_pack(chunks)
        self.verified.update(d for d, _ in chunks)
        self.written += sum(len(blob) for _, blob in chunks)

    def put(self, digest: str, data: bytes) -> None:
        """Raw bytes already checked against ``digest``."""
        self._write(digest, self._packer.compress(data))

    def _write(self, digest: str, blob: bytes) -> None:
        """Write ``blob`` beside the store and rename it into place whole."""
        path = os.fspath(self.store.chunk_path(digest))
        if digest[:2] not in self._fans:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            self._fans.add(digest[:2])
        tmp = f"{self._tmp}/{digest}.{self._tag}.tmp"
        try:
            with open(tmp, "wb") as out:
                out.write(blob)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        self.verified.add(digest)
        self.written += len(blob)


class Spool:
    """Batch answers written to disk as they are read, so that a fetch killed before it
    stored what it received loses nothing: :meth:`recover` stores it at the next start.

    Reading stays ahead of storing (which creates a file per chunk), so little waits unread
    in kernel buffers; without a directory the spool is off."""

    def __init__(self, root: Path | None) -> None:
        self.root = root
        self._tag = uuid.uuid4().hex[:12]
        if root is not None:
            root.mkdir(parents=True, exist_ok=True)

    @property
    def active(self) -> bool:
        return self.root is not None

    @contextlib.contextmanager
    def writer(self) -> Iterator[Callable[[bytes], object]]:
        """A function that appends bytes to a new spool file, removed at exit."""
        if self.root is None:
            yield lambda _: None
            return
        path = self.root / f"{self._tag}.{uuid.uuid4().hex[:8]}.frames"
        try:
            with path.open("wb", buffering=0) as out:
                yield out.write
        finally:
            path.unlink(missing_ok=True)

    def recover(self, sink: ChunkSink) -> int:
        """Store the whole, sound plain chunks of spool files other fetchers left; returns
        how many were stored.  The files are removed."""
        if self.root is None:
            return 0
        kept = 0
        for path in sorted(self.root.glob("*.frames")):
            if path.name.startswith(self._tag):
                continue
            kept += _recover_file(path, sink)
            path.unlink(missing_ok=True)
        return kept


def _recover_file(path: Path, sink: ChunkSink) -> int:
    try:
        frames = FrameReader().feed(path.read_bytes())
    except IntegrityError:
        return 0  # a damaged spool: what it held is fetched again
    kept = 0
    for frame in frames:
        if frame.kind is FrameKind.PLAIN and not sink.store.has(frame.hash):
            with contextlib.suppress(IntegrityError):
                sink.put_compressed(frame.hash, frame.payload)
                kept += 1
    return kept




class Fetcher:
    """Gets manifests and missing chunks from one image server into a :class:`ChunkStore`."""

    def __init__(
        self,
        store: ChunkStore,
        base_url: str,
        *,
        options: FetchOptions = FetchOptions(),
        transport: httpx.AsyncBaseTransport | None = None,
        spool: Path | None = None,
    ) -> None:
        self.store = store
        self.sink = ChunkSink(store)
        self.spool = Spool(spool)
        self.options = options
        self._base_url = base_url.rstrip("/") + "/"
        self._transport = transport
        self._bucket = TokenBucket(rate=options.rate, burst=options.burst) if options.rate else None
        self._flushed = time.monotonic()

    def client(self) -> httpx.AsyncClient:
        opts = self.options
        timeout = httpx.Timeout(opts.read_timeout, connect=opts.connect_timeout)
        limits = httpx.Limits(
            max_connections=opts.parallel, max_keepalive_connections=opts.parallel
        )
        transport = self._transport or large_read_transport(limits=limits)
        return httpx.AsyncClient(
            base_url=self._base_url, timeout=timeout, limits=limits, transport=transport
        )

    async def _retrying(
        self,
        what: str,
        attempt_once: Callable[[], Awaitable[None]],
        *,
        progressed: Callable[[], bool] = lambda: False,
    ) -> None:
        """Run ``attempt_once`` until it succeeds; an attempt that ``progressed`` does not
        count against the policy's attempts (a link that drops every few MB still ends)."""
        policy = self.options.retry
        attempt = 0
        while attempt < policy.attempts:
            try:
                await attempt_once()
                return
            except _RETRYABLE:
                attempt = 0 if progressed() else attempt + 1
                await asyncio.sleep(policy.delay(attempt))
        raise Unavailable(f"gave up on {what} after {policy.attempts} attempts")

    async def manifest(
        self, client: httpx.AsyncClient, manifest_id: str, *, base: str | None = None
    ) -> Manifest:
        """The manifest, from the store or else from the server (checked against its id).

        With ``base`` (an older manifest held locally) the server may send it as a delta.
        """
        if not self.store.has_manifest(manifest_id):
            await self._retrying(
                f"manifest {manifest_id}", lambda: self._get_manifest(client, manifest_id, base)
            )
        return self.store.get_manifest(manifest_id)

    async def _get_manifest(
        self, client: httpx.AsyncClient, manifest_id: str, base: str | None
    ) -> None:
        params = {"base": base} if base and self.store.has_manifest(base) else {}
        response = await client.get(f"manifests/{manifest_id}", params=params)
        _check_status(response, f"manifest {manifest_id}")
        try:
            raw = response.content
            if response.headers.get(BASE_HEADER) == params.get("base", ""):
                raw = decode_delta(raw, self.store.manifest_bytes(params["base"]))
            manifest = Manifest.from_json(raw, expect_id=manifest_id)
        except SlicelabError as exc:
            raise IntegrityError(f"manifest {manifest_id} arrived damaged") from exc
        await asyncio.to_thread(self.store.put_manifest, manifest)

    async def chunk(self, client: httpx.AsyncClient, digest: str) -> int:
        """Fetch one chunk into the store (retrying); returns the bytes received."""
        received: list[int] = []

        async def once() -> None:
            received.append(await self._get_chunk(client, digest))

        await self._retrying(f"chunk {digest}", once)
        return received[-1]

    async def _get_chunk(self, client: httpx.AsyncClient, digest: str) -> int:
        if self._bucket is not None:
            await self._bucket.take(self.options.burst)
        body = bytearray()
        try:
            async with client.stream("GET", f"chunks/{digest}") as response:
                _check_status(response, f"chunk {digest}")
                async for part in response.aiter_raw():
                    body += part
        finally:
            if self._bucket is not None:
                self._bucket.settle(self.options.burst, len(body))
        self.sink.put_compressed(digest, bytes(body))
        return len(body)

    async def chunks(
        self,
        manifest: Manifest,
        missing: dict[str, int],
        *,
        progress: ProgressFn | None = None,
        base: Manifest | None = None,
    ) -> None:
        """Fetch ``missing`` (hash -> length) in batches, reporting progress; uncapped with
        up to ``parallel`` requests at a time, under a cap one at a time.  With ``base`` (an
        older manifest held here) changed chunks may come as deltas against it."""
        total = sum(manifest.unique_hashes().values())
        done = [total - sum(missing.values())]
        opts = self.options
        batches = deque(
            plan_batches(
                manifest,
                missing,
                base=base,
                has=self.store.has,
                max_bytes=opts.batch_limit,
                max_chunks=opts.batch_chunks,
            )
        )
        job = _Job(manifest, missing, first_refs(manifest) if base is not None else {})

        def report() -> None:
            if progress is not None:
                progress(Progress(manifest.id, done[0], total))

        def stored(digest: str) -> None:
            done[0] += missing[digest]
            report()

        async def worker(client: httpx.AsyncClient) -> None:
            while batches:
                await self._batch(client, job, batches.popleft(), stored)

        report()
        try:
            async with self.client() as client:
                workers = 1 if self._bucket is not None else opts.parallel
                await _all([worker(client) for _ in range(min(workers, max(1, len(batches))))])
        finally:
            await asyncio.to_thread(self.store.flush)
            self._flushed = time.monotonic()

    async def _batch(
        self, client: httpx.AsyncClient, job: _Job, batch: Batch, stored: Callable[[str], None]
    ) -> None:
        """Fetch one batch, asking again for what has not arrived until all has."""
        remaining = dict.fromkeys(batch.hashes)
        use = [batch.base]
        before = [len(remaining)]

        async def once() -> None:
            if not remaining:
                return  # all arrived before the attempt that failed ended
            before[0] = len(remaining)
            try:
                await self._post_batch(client, job, use[0], remaining, stored)
            except IntegrityError:
                use[0] = None  # a delta went wrong: ask for whole chunks from now on
                raise
            finally:
                await self._maybe_flush()
            if remaining:
                raise _Retryable(f"{len(remaining)} chunks of a batch did not arrive")

        await self._retrying(
            f"{len(batch.hashes)} chunks", once, progressed=lambda: len(remaining) < before[0]
        )

    async def _maybe_flush(self) -> None:
        """Sync the file system if the last sync is older than :data:`FLUSH_EVERY`."""
        if time.monotonic() - self._flushed >= FLUSH_EVERY:
            self._flushed = time.monotonic()
            await asyncio.to_thread(self.store.flush)

    async def _post_batch(
        self,
        client: httpx.AsyncClient,
        job: _Job,
        base: Manifest | None,
        remaining: dict[str, None],
        stored: Callable[[str], None],
    ) -> None:
        """Ask for ``remaining`` once the cap allows their bytes, read the answer as fast as
        it comes (into the spool, if there is one), then keep every chunk that arrived."""
        body: dict[str, object] = {"hashes": list(remaining)}
        if base is not None:
            body.update(manifest=job.manifest.id, base=base.id)
        asked = sum(job.missing[h] for h in remaining)
        if self._bucket is not None:
            await self._bucket.take(asked)
        reader = FrameReader()
        arrived: list[Frame] = []
        unread = bytearray()  # with a spool: parsed once the answer is in
        with self.spool.writer() as spool:
            try:
                async with client.stream("POST", "chunks/batch", json=body) as response:
                    _check_status(response, f"a batch of {len(remaining)} chunks")
                    async for part in response.aiter_raw():
                        if self.spool.active:
                            spool(part)
                            unread += part
                            continue
                        arrived += (f for f in reader.feed(part) if f.hash in remaining)
                        self._keep_all(arrived, job, base, remaining, stored)
            finally:
                arrived += (f for f in reader.feed(unread) if f.hash in remaining)
                if self._bucket is not None:
                    self._bucket.settle(asked, reader.consumed)
                self._keep_all(arrived, job, base, remaining, stored)

    def _keep_all(
        self,
        frames: list[Frame],
        job: _Job,
        base: Manifest | None,
        remaining: dict[str, None],
        stored: Callable[[str], None],
    ) -> None:
        packed: dict[str, bytes] = {}  # checked plain frames: one pack file
        try:
            while frames:
                frame = frames.pop(0)
                if frame.hash not in remaining or frame.hash in packed:
                    continue
                if frame.kind is FrameKind.PLAIN:
                    self.sink.check(frame.hash, frame.payload)
                    packed[frame.hash] = frame.payload
                    continue
                self._keep(frame, job.refs, base)
                del remaining[frame.hash]
                stored(frame.hash)
        finally:
            self.sink.put_pack(list(packed.items()))
            for digest in packed:
                del remaining[digest]
                stored(digest)

    def _keep(self, frame: Frame, refs: dict[str, ChunkRef], base: Manifest | None) -> None:
        """Check and store one received delta frame (durable at the next flush)."""
        if base is None or frame.hash not in refs:
            raise IntegrityError(f"chunk {frame.hash} came as a delta that was not asked for")
        try:
            parts = [self.store.get(b.hash) for b in delta_bases(refs[frame.hash], base)]
        except NotFound as exc:
            raise IntegrityError(f"a base of chunk {frame.hash} is gone") from exc
        self.sink.put(frame.hash, decode_chunk(frame.hash, frame.payload, parts))


@dataclass(frozen=True, slots=True)
class _Job:
    """What one :meth:`Fetcher.chunks` call fetches: the image, the missing chunks (hash ->
    length) and where each chunk first occurs (for deltas)."""

    manifest: Manifest
    missing: dict[str, int]
    refs: dict[str, ChunkRef]


@dataclass(frozen=True, slots=True)
class Batch:
    """Chunks asked for in one request, and the base their deltas are made against."""

    hashes: tuple[str, ...]
    base: Manifest | None


def plan_batches(
    manifest: Manifest,
    missing: dict[str, int],
    *,
    base: Manifest | None,
    has: Callable[[str], bool],
    max_bytes: int,
    max_chunks: int,
) -> list[Batch]:
    """Group ``missing`` (in image order) into batches of at most ``max_bytes`` and
    ``max_chunks``; chunks whose delta bases are all held here go in batches with ``base``."""
    refs = first_refs(manifest) if base is not None else {}
    groups: dict[bool, list[str]] = {True: [], False: []}
    for digest in missing:
        bases = delta_bases(refs[digest], base) if base is not None and digest in refs else ()
        groups[bool(bases) and all(has(b.hash) for b in bases)].append(digest)
    batches: list[Batch] = []
    for with_base, hashes in groups.items():
        size, current = 0, list[str]()
        for digest in hashes:
            if current and (size + missing[digest] > max_bytes or len(current) >= max_chunks):
                batches.append(Batch(tuple(current), base if with_base else None))
                size, current = 0, []
            current.append(digest)
            size += missing[digest]
        if current:
            batches.append(Batch(tuple(current), base if with_base else None))
    return batches


async def _all(jobs: list[Coroutine[None, None, None]]) -> None:
    """Run ``jobs`` together; the first failure cancels the rest and is raised as itself."""
    try:
        async with asyncio.TaskGroup() as group:
            for job in jobs:
                group.create_task(job)
    except BaseExceptionGroup as failures:
        raise failures.exceptions[0] from None


def _check_status(response: httpx.Response, what: str) -> None:
    if response.status_code == 404:
        raise NotFound(f"the server has no {what}")
    if response.status_code == 429 or response.status_code >= 500:
        raise _Retryable(f"{what}: HTTP {response.status_code}")
    if response.status_code != 200:
        raise Unavailable(f"{what}: unexpected HTTP {response.status_code}")
