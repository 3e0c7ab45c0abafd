"""Chunk deltas: a changed chunk sent compressed against the chunks it replaces.

When a node holds one version of an image and fetches the next, a chunk that changed is
usually the old bytes at the same place with a few edits.  The server then compresses the
new chunk with zstd using the old bytes as a raw-content dictionary, so only the edits
travel; the node, which holds the same old bytes, decompresses and checks the BLAKE3 of the
result as it does for any chunk.

Both sides choose the dictionary the same way (:func:`delta_bases`): the chunks of the base
manifest that overlap the new chunk's byte range (where it first occurs), at most
:data:`MAX_BASES` of them and at most :data:`MAX_DICTIONARY` bytes.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable

import zstandard

from slicelab.images.chunker import hash_bytes
from slicelab.images.errors import IntegrityError
from slicelab.images.manifest import MAX_CHUNK, ChunkRef, Manifest

__all__ = ["MAX_BASES", "MAX_DICTIONARY", "decode_chunk", "delta_bases", "encode_chunk",
           "first_refs"]

MAX_BASES = 4
MAX_DICTIONARY = 1 << 20
_LEVEL = 3


def first_refs(manifest: Manifest) -> dict[str, ChunkRef]:
    """Each chunk hash of ``manifest`` with the place it first occurs."""
    found: dict[str, ChunkRef] = {}
    for ref in manifest.chunks:
        found.setdefault(ref.hash, ref)
    return found


def delta_bases(ref: ChunkRef, base: Manifest) -> tuple[ChunkRef, ...]:
    """The chunks of ``base`` overlapping ``ref``'s byte range (the delta's dictionary)."""
    starts = [c.offset for c in base.chunks]
    first = max(0, bisect.bisect_right(starts, ref.offset) - 1)
    end = ref.offset + ref.length
    chosen: list[ChunkRef] = []
    total = 0
    for chunk in base.chunks[first:]:
        if chunk.offset >= end or len(chosen) == MAX_BASES:
            break
        if chunk.offset + chunk.length <= ref.offset:
            continue
        if total + chunk.length > MAX_DICTIONARY:
            break
        chosen.append(chunk)
        total += chunk.length
    return tuple(chosen)


def _dictionary(parts: Iterable[bytes]) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(b"".join(parts),
                                         dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def encode_chunk(data: bytes, base_parts: Iterable[bytes]) -> bytes:
    """``data`` as one zstd frame compressed against the concatenated ``base_parts``."""
    compressor = zstandard.ZstdCompressor(level=_LEVEL, dict_data=_dictionary(base_parts))
    return compressor.compress(data)


def decode_chunk(digest: str, blob: bytes, base_parts: Iterable[bytes]) -> bytes:
    """Undo :func:`encode_chunk`; the result must hash to ``digest``."""
    try:
        data = zstandard.ZstdDecompressor(dict_data=_dictionary(base_parts)).decompress(
            blob, max_output_size=MAX_CHUNK)
    except zstandard.ZstdError as exc:
        raise IntegrityError(f"delta of chunk {digest} does not decode") from exc
    if hash_bytes(data) != digest:
        raise IntegrityError(f"delta of chunk {digest} does not hash to it")
    return data
