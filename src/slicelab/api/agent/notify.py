"""Wake long-polls when a node's desired state (or a command's result) changes.

Services run in worker threads and call :meth:`ChangeNotifier.notify` after their commit;
the waiters are coroutines on the server's event loop. Each key (a node id or a command id)
has at most one pending :class:`asyncio.Event`; a notification sets it and forgets it, so
later waiters start from a fresh one. Take the event *before* reading the state it guards,
then wait on it: a change in between is never missed.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Collection

__all__ = ["FRESH", "ChangeNotifier", "Checked"]

FRESH = 30.0  # seconds a check of a node's desired state spares the next polls the database


class ChangeNotifier:
    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._events: dict[str, asyncio.Event] = {}
        self._lock = threading.Lock()

    def event(self, key: str) -> asyncio.Event:
        """The event the next notification of ``key`` sets (call on the event loop)."""
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._loop is not loop:
                self._loop, self._events = loop, {}
            found = self._events.get(key)
            if found is None:
                found = self._events[key] = asyncio.Event()
            return found

    def forget(self, key: str) -> None:
        with self._lock:
            self._events.pop(key, None)

    def notify(self, keys: Collection[str]) -> None:
        """Wake every waiter on ``keys``; safe to call from any thread."""
        loop = self._loop
        if not keys or loop is None or loop.is_closed():
            return
        try:
            loop.call_soon_threadsafe(self._wake, list(keys))
        except RuntimeError:  # the loop closed between the check and the call
            return

    def _wake(self, keys: list[str]) -> None:
        with self._lock:
            events = [self._events.pop(k) for k in keys if k in self._events]
        for found in events:
            found.set()

    async def wait(self, event: asyncio.Event, timeout: float) -> bool:
        """True if ``event`` was set within ``timeout`` seconds."""
        if timeout <= 0:
            return event.is_set()
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except TimeoutError:
            return False
        return True


class Checked:
    """When each node's desired state was last found unchanged, so that the polls after it
    need no database: a check stands while the event taken before it is still pending (no
    notification for the node since) and for at most ``fresh`` seconds, the bound on how
    late a poll sees what nothing here notifies (another server process's writes, a new
    version of an image name). Used on the event loop only.
    """

    def __init__(
        self, *, fresh: float = FRESH, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.fresh, self._clock = fresh, clock
        self._checked: dict[str, tuple[asyncio.Event, int, float]] = {}

    def record(self, key: str, event: asyncio.Event, generation: int) -> None:
        """``key``'s document was at ``generation`` after ``event`` was taken."""
        self._checked[key] = (event, generation, self._clock())

    def unchanged(self, key: str, event: asyncio.Event, after: int) -> bool:
        """True if the last check of ``key`` still says nothing newer than ``after``."""
        found = self._checked.get(key)
        if found is None:
            return False
        checked_event, generation, at = found
        return (
            checked_event is event
            and not event.is_set()
            and generation <= after
            and self._clock() - at < self.fresh
        )
