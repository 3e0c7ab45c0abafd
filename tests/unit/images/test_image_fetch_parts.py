from __future__ import annotations

import asyncio
import time

import pytest

from slicelab.domain.errors import InvalidInput
from slicelab.images.cache import FetchQueue, Quota
from slicelab.images.fetch import Progress, RetryPolicy, TokenBucket


class FakeCache:
    def __init__(self) -> None:
        self.calls: list[tuple[str, frozenset[str]]] = []

    async def fetch(self, image: str, *, pins: set[str], progress: object = None) -> None:
        self.calls.append((image, frozenset(pins)))


def test_queue_orders_by_need_time_and_moves_earlier_submissions_forward() -> None:
    cache = FakeCache()
    queue = FetchQueue(cache)  # type: ignore[arg-type]
    queue.submit("later", need_at=300)
    queue.submit("soon", need_at=100)
    queue.submit("middle", need_at=200)
    queue.submit("later", need_at=50)
    queue.submit("soon", need_at=400)  # a later time does not push it back
    assert queue.pending() == [(50, "later"), (100, "soon"), (200, "middle")]
    assert asyncio.run(queue.run(pins={"running"})) == ["later", "soon", "middle"]
    assert queue.pop() is None


def test_queued_images_are_pinned_while_another_is_fetched() -> None:
    cache = FakeCache()
    queue = FetchQueue(cache)  # type: ignore[arg-type]
    queue.submit("a", need_at=1)
    queue.submit("b", need_at=2)
    asyncio.run(queue.run(pins={"running"}))
    assert cache.calls[0] == ("a", frozenset({"running", "b"}))
    assert cache.calls[1] == ("b", frozenset({"running"}))


def test_token_bucket_holds_the_rate() -> None:
    bucket = TokenBucket(rate=400_000, burst=20_000)

    async def take_all() -> float:
        started = time.monotonic()
        for _ in range(20):
            await bucket.take(10_000)
        return time.monotonic() - started

    elapsed = asyncio.run(take_all())
    assert (200_000 - 20_000) / 400_000 * 0.95 <= elapsed < 3.0


def test_token_bucket_refuses_nonsense() -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=0, burst=1)


def test_backoff_grows_and_is_capped() -> None:
    policy = RetryPolicy(base_delay=0.1, max_delay=1.0)
    assert all(0 <= policy.delay(0) <= 0.1 for _ in range(50))
    assert all(0 <= policy.delay(10) <= 1.0 for _ in range(50))
    assert max(policy.delay(10) for _ in range(200)) > 0.5


def test_progress_reads_as_a_percentage() -> None:
    progress = Progress("ab" * 32, 63, 100)
    assert progress.fraction == 0.63
    assert str(progress) == "fetching image abababababab 63%"
    assert Progress("x", 0, 0).fraction == 1.0


def test_quota_watermarks_are_checked() -> None:
    with pytest.raises(InvalidInput):
        Quota(100, high=0.5, low=0.8)
    with pytest.raises(InvalidInput):
        Quota(0)
