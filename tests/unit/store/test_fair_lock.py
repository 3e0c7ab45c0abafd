"""FairLock: first come, first served; released from any thread; a wait that times out
leaves the line."""

from __future__ import annotations

import threading
import time

import pytest

from slicelab.domain.errors import SlicelabError
from slicelab.store.queue import FairLock


def _waiter(lock: FairLock, order: list[str], name: str) -> threading.Thread:
    def run() -> None:
        assert lock.acquire(timeout=5)
        order.append(name)
        lock.release()

    thread = threading.Thread(target=run)
    thread.start()
    time.sleep(0.05)  # in line before the next one
    return thread


def test_the_longest_waiter_goes_first() -> None:
    lock, order = FairLock(), []
    assert lock.acquire(timeout=1)
    threads = [_waiter(lock, order, name) for name in "abcd"]
    lock.release()
    for t in threads:
        t.join(5)
    assert order == list("abcd")


def test_a_thread_writing_in_a_loop_does_not_starve_another() -> None:
    lock, done = FairLock(), threading.Event()
    got: list[float] = []

    def busy() -> None:
        while not done.is_set():
            assert lock.acquire(timeout=5)
            time.sleep(0.002)
            lock.release()

    hog = threading.Thread(target=busy)
    hog.start()
    time.sleep(0.02)
    start = time.monotonic()
    assert lock.acquire(timeout=2)
    got.append(time.monotonic() - start)
    lock.release()
    done.set()
    hog.join(5)
    assert got[0] < 0.5


def test_released_from_another_thread_and_timeouts() -> None:
    lock = FairLock()
    assert lock.acquire(timeout=1)
    assert not lock.acquire(timeout=0.05)  # not re-entrant: held is held
    releaser = threading.Thread(target=lock.release)  # as a FastAPI dependency's teardown
    releaser.start()
    releaser.join(5)
    assert lock.acquire(timeout=0.1)  # the timed-out waiter left the line
    lock.release()
    with pytest.raises(SlicelabError):
        lock.release()
