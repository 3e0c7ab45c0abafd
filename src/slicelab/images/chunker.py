"""Content-defined chunking (FastCDC 2020, normalized) with BLAKE3 chunk hashes.

The cut points come from :mod:`pyfastcdc` (a compiled port of the reference FastCDC 2020
algorithm); hashes from :mod:`blake3`.  One core chunks and hashes well above 1 GB/s.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import blake3
from pyfastcdc import FastCDC

from slicelab.domain.errors import InvalidInput

__all__ = [
    "DEFAULT_PARAMS",
    "ChunkParams",
    "Piece",
    "chunk_bytes",
    "chunk_file",
    "chunk_stream",
    "hash_bytes",
    "is_hash",
]

_HASH = re.compile(r"[0-9a-f]{64}")


def hash_bytes(data: bytes | bytearray | memoryview) -> str:
    """BLAKE3 of ``data`` as 64 lowercase hex digits."""
    return blake3.blake3(data).hexdigest()


def is_hash(value: str) -> bool:
    """Whether ``value`` looks like a hash this package makes."""
    return _HASH.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ChunkParams:
    """FastCDC parameters: sizes in bytes and the normalization level (0-3)."""

    min_size: int = 16 * 1024
    avg_size: int = 64 * 1024
    max_size: int = 256 * 1024
    normalization: int = 2

    def __post_init__(self) -> None:
        if not 64 <= self.min_size <= self.avg_size <= self.max_size:
            raise InvalidInput("need 64 <= min_size <= avg_size <= max_size", field="chunking")
        if self.normalization not in (0, 1, 2, 3):
            raise InvalidInput("normalization must be 0..3", field="chunking.normalization")

    def cutter(self) -> FastCDC:
        # pyfastcdc's avg_size is the mask target past min_size (cut-point skipping).
        target = max(256, self.avg_size - self.min_size)
        return FastCDC(
            target,
            min_size=self.min_size,
            max_size=max(1024, self.max_size),
            normalized_chunking=self.normalization,  # type: ignore[arg-type]
        )


DEFAULT_PARAMS = ChunkParams()


@dataclass(frozen=True, slots=True)
class Piece:
    """One chunk of a stream: where it is, its hash, and (while iterating) its bytes."""

    offset: int
    length: int
    hash: str
    data: bytes


def chunk_stream(stream: BinaryIO, *, params: ChunkParams = DEFAULT_PARAMS) -> Iterator[Piece]:
    """Cut a readable binary stream into content-defined pieces, in order."""
    for chunk in params.cutter().cut_stream(stream):
        data = bytes(chunk.data)
        yield Piece(offset=chunk.offset, length=chunk.length, hash=hash_bytes(data), data=data)


def chunk_bytes(data: bytes, *, params: ChunkParams = DEFAULT_PARAMS) -> Iterator[Piece]:
    """Cut an in-memory buffer into pieces (the pieces' ``data`` are copies)."""
    view = memoryview(data)
    for chunk in params.cutter().cut_buf(view):
        piece = bytes(chunk.data)
        yield Piece(offset=chunk.offset, length=chunk.length, hash=hash_bytes(piece), data=piece)


def chunk_file(path: Path, *, params: ChunkParams = DEFAULT_PARAMS) -> Iterator[Piece]:
    """Cut a regular file (read through mmap) into pieces."""
    for chunk in params.cutter().cut_file(str(path)):
        piece = bytes(chunk.data)
        yield Piece(offset=chunk.offset, length=chunk.length, hash=hash_bytes(piece), data=piece)
