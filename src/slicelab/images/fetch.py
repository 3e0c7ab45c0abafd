"""Fetching chunks and manifests over HTTP: retries, a bandwidth cap and progress.

Made for nodes whose uplink drops and stalls: every request is retried with capped
exponential backoff and jitter after a dropped connection, a refused one, a stall past
the read timeout, a server error or bytes that fail their hash.  Each chunk is written
atomically as soon as it is verified, so an interruption (even a power cut) costs at
most the chunks in flight.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field

import httpx

from slicelab.domain.errors import NotFound, SlicelabError, Unavailable
from slicelab.images.errors import IntegrityError
from slicelab.images.manifest import BASE_HEADER, Manifest, decode_delta
from slicelab.images.store import ChunkStore

__all__ = ["FetchOptions", "Fetcher", "Progress", "ProgressFn", "RetryPolicy", "TokenBucket"]


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
    """Parallel requests, a bandwidth cap (bytes/s, None for none), timeouts and retries."""

    parallel: int = 4
    rate: float | None = None
    burst: int = 256 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 15.0
    retry: RetryPolicy = field(default_factory=RetryPolicy)


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

    async def _retrying(self, what: str, attempt_once: Callable[[], Awaitable[None]]) -> None:
        policy = self.options.retry
        for attempt in range(policy.attempts):
            try:
                await attempt_once()
                return
            except _RETRYABLE:
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
                     progress: ProgressFn | None = None) -> None:
        """Fetch ``missing`` (hash -> length) with bounded parallelism, reporting progress."""
        total = sum(manifest.unique_hashes().values())
        done = [total - sum(missing.values())]
        queue: asyncio.Queue[str] = asyncio.Queue()
        for digest in missing:
            queue.put_nowait(digest)

        def report() -> None:
            if progress is not None:
                progress(Progress(manifest.id, done[0], total))

        async def worker(client: httpx.AsyncClient) -> None:
            while not queue.empty():
                digest = queue.get_nowait()
                await self.chunk(client, digest)
                done[0] += missing[digest]
                report()

        report()
        async with self.client() as client:
            workers = min(self.options.parallel, max(1, len(missing)))
            await _all([worker(client) for _ in range(workers)])


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
