"""Fetching chunks and manifests over HTTP: retries, a bandwidth cap and progress.

Made for nodes whose uplink drops and stalls: every request is retried with capped
exponential backoff and jitter after a dropped connection, a refused one, a stall past
the read timeout, a server error or bytes that fail their hash.  Chunks come in batches
(``POST chunks/batch``: one streamed response of many chunks), each written atomically as
soon as it is verified and the batch made durable by one file system sync at its end, so
a killed fetch loses nothing it received and an interruption costs at most the batches in
flight (at most ``parallel`` x ``batch_bytes``).  A chunk that changed since a version the
node holds may come as a delta against the old chunks at its place
(:mod:`slicelab.images.delta`).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

import httpx

from slicelab.domain.errors import NotFound, SlicelabError, Unavailable
from slicelab.images.delta import decode_chunk, delta_bases, first_refs
from slicelab.images.errors import IntegrityError
from slicelab.images.frames import Frame, FrameKind, FrameReader
from slicelab.images.manifest import BASE_HEADER, ChunkRef, Manifest, decode_delta
from slicelab.images.store import ChunkStore

__all__ = ["Batch", "FetchOptions", "Fetcher", "Progress", "ProgressFn", "RetryPolicy",
           "TokenBucket", "plan_batches"]


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
    """A byte-rate cap shared by every request of a fetcher (``rate`` bytes per second)."""

    def __init__(self, *, rate: float, burst: int,
                 clock: Callable[[], float] = time.monotonic) -> None:
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
        """Wait until ``amount`` bytes may pass (in pieces of at most ``burst``)."""
        async with self._lock:
            while amount > 0:
                piece = min(amount, self.burst)
                self._refill()
                if self._tokens < piece:
                    await asyncio.sleep((piece - self._tokens) / self.rate)
                    self._refill()
                self._tokens -= piece
                amount -= piece


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

    @property
    def batch_limit(self) -> int:
        """Bytes per batch: under a bandwidth cap about a quarter second's worth (at least
        128 KiB), so an interruption wastes little more than that."""
        if self.rate is None:
            return self.batch_bytes
        return min(self.batch_bytes, max(128 * 1024, int(self.rate / 4)))


class _Retryable(Exception):
    """A response that is worth asking again (5xx, 429)."""


_RETRYABLE = (httpx.TransportError, IntegrityError, _Retryable)


class Fetcher:
    """Gets manifests and missing chunks from one image server into a :class:`ChunkStore`."""

    def __init__(self, store: ChunkStore, base_url: str, *, options: FetchOptions = FetchOptions(),
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        self.store = store
        self.options = options
        self._base_url = base_url.rstrip("/") + "/"
        self._transport = transport
        self._bucket = (TokenBucket(rate=options.rate, burst=options.burst)
                        if options.rate else None)

    def client(self) -> httpx.AsyncClient:
        opts = self.options
        timeout = httpx.Timeout(opts.read_timeout, connect=opts.connect_timeout)
        limits = httpx.Limits(max_connections=opts.parallel,
                              max_keepalive_connections=opts.parallel)
        return httpx.AsyncClient(base_url=self._base_url, timeout=timeout, limits=limits,
                                 transport=self._transport)

    async def _retrying(self, what: str, attempt_once: Callable[[], Awaitable[None]], *,
                        progressed: Callable[[], bool] = lambda: False) -> None:
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

    async def manifest(self, client: httpx.AsyncClient, manifest_id: str, *,
                       base: str | None = None) -> Manifest:
        """The manifest, from the store or else from the server (checked against its id).

        With ``base`` (an older manifest held locally) the server may send it as a delta.
        """
        if not self.store.has_manifest(manifest_id):
            await self._retrying(f"manifest {manifest_id}",
                                 lambda: self._get_manifest(client, manifest_id, base))
        return self.store.get_manifest(manifest_id)

    async def _get_manifest(self, client: httpx.AsyncClient, manifest_id: str,
                            base: str | None) -> None:
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
        body = bytearray()
        async with client.stream("GET", f"chunks/{digest}") as response:
            _check_status(response, f"chunk {digest}")
            async for part in response.aiter_raw():
                if self._bucket is not None:
                    await self._bucket.take(len(part))
                body += part
        await asyncio.to_thread(self.store.put_compressed, digest, bytes(body))
        return len(body)

    async def chunks(self, manifest: Manifest, missing: dict[str, int], *,
                     progress: ProgressFn | None = None, base: Manifest | None = None) -> None:
        """Fetch ``missing`` (hash -> length) in batches with bounded parallelism, reporting
        progress; with ``base`` (an older manifest held here) changed chunks may come as
        deltas against it."""
        total = sum(manifest.unique_hashes().values())
        done = [total - sum(missing.values())]
        opts = self.options
        batches = deque(plan_batches(manifest, missing, base=base, has=self.store.has,
                                     max_bytes=opts.batch_limit, max_chunks=opts.batch_chunks))

        def report() -> None:
            if progress is not None:
                progress(Progress(manifest.id, done[0], total))

        def stored(digest: str) -> None:
            done[0] += missing[digest]
            report()

        async def worker(client: httpx.AsyncClient) -> None:
            while batches:
                await self._batch(client, manifest, batches.popleft(), stored)

        report()
        async with self.client() as client:
            workers = min(opts.parallel, max(1, len(batches)))
            await _all([worker(client) for _ in range(workers)])

    async def _batch(self, client: httpx.AsyncClient, manifest: Manifest, batch: Batch,
                     stored: Callable[[str], None]) -> None:
        """Fetch one batch, asking again for what has not arrived until all has."""
        remaining = dict.fromkeys(batch.hashes)
        use = [batch.base]
        before = [len(remaining)]

        async def once() -> None:
            if not remaining:
                return  # all arrived before the attempt that failed ended
            before[0] = len(remaining)
            try:
                await self._post_batch(client, manifest, use[0], remaining, stored)
            except IntegrityError:
                use[0] = None  # a delta went wrong: ask for whole chunks from now on
                raise
            finally:
                await asyncio.to_thread(self.store.flush)
            if remaining:
                raise _Retryable(f"{len(remaining)} chunks of a batch did not arrive")

        await self._retrying(f"{len(batch.hashes)} chunks", once,
                             progressed=lambda: len(remaining) < before[0])

    async def _post_batch(self, client: httpx.AsyncClient, manifest: Manifest,
                          base: Manifest | None, remaining: dict[str, None],
                          stored: Callable[[str], None]) -> None:
        body: dict[str, object] = {"hashes": list(remaining)}
        if base is not None:
            body.update(manifest=manifest.id, base=base.id)
        refs = first_refs(manifest) if base is not None else {}
        reader = FrameReader()
        async with client.stream("POST", "chunks/batch", json=body) as response:
            _check_status(response, f"a batch of {len(remaining)} chunks")
            async for part in response.aiter_raw():
                if self._bucket is not None:
                    await self._bucket.take(len(part))
                for frame in reader.feed(part):
                    if frame.hash in remaining:
                        await asyncio.to_thread(self._keep, frame, refs, base)
                        del remaining[frame.hash]
                        stored(frame.hash)

    def _keep(self, frame: Frame, refs: dict[str, ChunkRef], base: Manifest | None) -> None:
        """Check and store one received frame (durable at the batch's flush)."""
        if frame.kind is FrameKind.PLAIN:
            self.store.put_compressed(frame.hash, frame.payload, sync=False)
            return
        if base is None or frame.hash not in refs:
            raise IntegrityError(f"chunk {frame.hash} came as a delta that was not asked for")
        try:
            parts = [self.store.get(b.hash) for b in delta_bases(refs[frame.hash], base)]
        except NotFound as exc:
            raise IntegrityError(f"a base of chunk {frame.hash} is gone") from exc
        self.store.put(frame.hash, decode_chunk(frame.hash, frame.payload, parts), sync=False)


@dataclass(frozen=True, slots=True)
class Batch:
    """Chunks asked for in one request, and the base their deltas are made against."""

    hashes: tuple[str, ...]
    base: Manifest | None


def plan_batches(manifest: Manifest, missing: dict[str, int], *, base: Manifest | None,
                 has: Callable[[str], bool], max_bytes: int, max_chunks: int) -> list[Batch]:
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
