"""Errors of the image subsystem, as leaves of the one tree in :mod:`slicelab.domain.errors`.

    SlicelabError
    ├── IntegrityError                 (500) stored or received bytes do not match their hash
    └── Conflict
        └── InsufficientResources
            └── CacheFull              (409) the image cache cannot make room, even by evicting
"""

from __future__ import annotations

from slicelab.domain.errors import InsufficientResources, SlicelabError

__all__ = ["CacheFull", "IntegrityError"]


class IntegrityError(SlicelabError):
    """Bytes on disk or off the wire do not hash to the name they were given."""

    status = 500
    title = "Integrity check failed"


class CacheFull(InsufficientResources):
    """Even after evicting every unpinned image the cache has no room."""

    title = "Image cache full"
