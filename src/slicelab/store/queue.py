"""A first-come, first-served lock: the queue of one process's SQLite writers.

``threading.Lock`` gives a released lock to whichever thread runs first, which is usually the
one that just released it: a thread that writes in a loop starves the others. Here a release
hands the lock to the caller that has waited longest. It belongs to no thread (a unit of work
may begin in one thread and end in another, as FastAPI's dependencies do), so it is not
re-entrant.
"""

from __future__ import annotations

import threading
from collections import deque

from slicelab.domain.errors import SlicelabError

__all__ = ["FairLock"]


class FairLock:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiting: deque[threading.Event] = deque()

    def acquire(self, *, timeout: float) -> bool:
        """Take the lock, waiting in line at most ``timeout`` seconds; False if not taken."""
        with self._guard:
            if not self._held and not self._waiting:
                self._held = True
                return True
            turn = threading.Event()
            self._waiting.append(turn)
        if turn.wait(timeout):
            return True
        with self._guard:
            if turn.is_set():  # handed over just as the wait gave up
                return True
            self._waiting.remove(turn)
            return False

    def release(self) -> None:
        """Let go; the longest waiter, if any, has the lock from now on."""
        with self._guard:
            if not self._held:
                raise SlicelabError("release of a FairLock that is not held")
            if self._waiting:
                self._waiting.popleft().set()
            else:
                self._held = False
