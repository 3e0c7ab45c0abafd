"""The wire format of a chunk batch: one streamed body of length-prefixed frames.

``POST .../chunks/batch`` answers with ``application/x-slicelab-chunks``: frames one after
another, each a 37-byte header and a payload::

    kind    1 byte    0: the chunk's stored zstd frame; 1: a zstd frame made against the
                      chunk's delta bases (:mod:`slicelab.images.delta`)
    hash   32 bytes   the chunk's BLAKE3, raw
    length  4 bytes   payload length, big-endian
    payload

Frames come in any order and a server may leave chunks out (it no longer has them); the
receiver checks every chunk against its hash and asks again for what did not arrive.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

from slicelab.images.errors import IntegrityError
from slicelab.images.manifest import MAX_CHUNK

__all__ = ["BATCH_TYPE", "HEADER", "MAX_PAYLOAD", "Frame", "FrameKind", "FrameReader", "pack_frame"]

BATCH_TYPE = "application/x-slicelab-chunks"
MAX_PAYLOAD = MAX_CHUNK + MAX_CHUNK // 64 + 1024
_HEADER = struct.Struct(">B32sI")
HEADER = _HEADER  # kind, raw hash, payload length


class FrameKind(IntEnum):
    PLAIN = 0
    DELTA = 1


@dataclass(frozen=True, slots=True)
class Frame:
    kind: FrameKind
    hash: str
    payload: bytes


def pack_frame(kind: FrameKind, digest: str, payload: bytes) -> bytes:
    """One frame: header and payload."""
    return _HEADER.pack(int(kind), bytes.fromhex(digest), len(payload)) + payload


class FrameReader:
    """Parses frames out of a byte stream fed in pieces of any size.

    A frame that arrives whole within one piece is cut out of it with a single copy."""

    def __init__(self) -> None:
        self._buffer = bytearray()
        self.consumed = 0  # bytes fed so far

    def feed(self, data: bytes | bytearray) -> list[Frame]:
        """Add bytes; return the frames they complete."""
        self.consumed += len(data)
        if self._buffer:
            self._buffer += data
            view = memoryview(self._buffer)
        else:
            view = memoryview(data)
        frames: list[Frame] = []
        start = 0
        while len(view) - start >= _HEADER.size:
            kind, raw, length = _HEADER.unpack_from(view, start)
            if kind not in (FrameKind.PLAIN, FrameKind.DELTA) or length > MAX_PAYLOAD:
                raise IntegrityError("a chunk batch holds a malformed frame")
            end = start + _HEADER.size + length
            if len(view) < end:
                break
            frames.append(
                Frame(FrameKind(kind), raw.hex(), bytes(view[start + _HEADER.size : end]))
            )
            start = end
        rest = bytearray(view[start:])
        view.release()
        self._buffer = rest
        return frames

    @property
    def pending(self) -> int:
        """Bytes of a frame begun but not complete."""
        return len(self._buffer)
