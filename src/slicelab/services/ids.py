"""Random ids for new rows (slivers, links, leases, commands, nodes).

Each id is 64 bits from the operating system's random source, as ``secrets.token_hex(8)``
gives, but drawn in blocks: one ``os.urandom`` call per 512 ids instead of one per id. That
call releases the interpreter lock, and the allocation engine's thread, which makes several
ids per placement, would otherwise wait for the lock again after each. The ids are not
secrets (they are shown to users); they only need to be unique. A forked child draws a
fresh block (it must not repeat its parent's ids)."""

from __future__ import annotations

import os
import threading

_BLOCK = 4096  # bytes drawn at once


class _RandomBlocks:
    __slots__ = ("_guard", "_block", "_at")

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._block = b""
        self._at = 0

    def take(self, size: int) -> bytes:
        with self._guard:
            if self._at + size > len(self._block):
                self._block, self._at = os.urandom(max(_BLOCK, size)), 0
            start = self._at
            self._at += size
            return self._block[start:self._at]

    def forget(self) -> None:
        self._guard = threading.Lock()
        self._block, self._at = b"", 0


_BLOCKS = _RandomBlocks()
os.register_at_fork(after_in_child=_BLOCKS.forget)


def new_id(prefix: str, nbytes: int = 8) -> str:
    """``prefix`` and ``nbytes`` random bytes in hex, e.g. ``new_id("s-")`` -> ``s-1f0c…``."""
    return prefix + _BLOCKS.take(nbytes).hex()
