"""Image manifests: what an image is made of, in canonical JSON; its hash is the image id.

A manifest names the image (``name``, ``version``), its total ``size``, the BLAKE3 ``hash``
of the whole byte stream, the chunking parameters used, and the ordered chunks as
``[hash, offset, length]``.  The canonical form is UTF-8 JSON with sorted keys and no
whitespace; the image id is the BLAKE3 of those bytes.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import cached_property
from typing import Any, BinaryIO

import blake3
import zstandard

from slicelab.domain.errors import InvalidInput, PayloadTooLarge
from slicelab.images.chunker import DEFAULT_PARAMS, ChunkParams, Piece, chunk_stream, is_hash

__all__ = [
    "BASE_HEADER",
    "FORMAT",
    "MAX_CHUNK",
    "MAX_MANIFEST_BYTES",
    "ChunkRef",
    "Manifest",
    "build_manifest",
    "decode_delta",
    "encode_delta",
    "manifest_from_pieces",
]

FORMAT = "slicelab-image/1"
BASE_HEADER = "X-Slicelab-Manifest-Base"  # a manifest sent as a delta names its base here
MAX_CHUNK = 16 * 1024 * 1024
MAX_MANIFEST_BYTES = 64 * 1024 * 1024
_NAME = re.compile(r"^[a-z0-9][a-z0-9._-]{0,127}$")
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]{0,63}$")


@dataclass(frozen=True, slots=True)
class ChunkRef:
    """One chunk of an image: its hash and where its bytes sit in the image stream."""

    hash: str
    offset: int
    length: int


@dataclass(frozen=True)
class Manifest:
    """An image: name, version, size, whole-stream hash, chunking and ordered chunks."""

    name: str
    version: str
    size: int
    hash: str
    chunks: tuple[ChunkRef, ...]
    params: ChunkParams = DEFAULT_PARAMS

    def __post_init__(self) -> None:
        _check_names(self.name, self.version)
        _check_hash(self.hash, where="hash")
        _check_chunks(self.chunks, self.size)

    @cached_property
    def id(self) -> str:
        """BLAKE3 of the canonical JSON: the image id."""
        return blake3.blake3(self.to_json()).hexdigest()

    def unique_hashes(self) -> dict[str, int]:
        """Each distinct chunk hash with its length, in first-use order."""
        return {c.hash: c.length for c in self.chunks}

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "name": self.name,
            "version": self.version,
            "size": self.size,
            "hash": self.hash,
            "chunking": _params_dict(self.params),
            "chunks": [[c.hash, c.offset, c.length] for c in self.chunks],
        }

    def to_json(self) -> bytes:
        """The canonical bytes whose hash is the id."""
        text = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=True)
        return text.encode("ascii")

    @classmethod
    def from_json(cls, raw: bytes, *, expect_id: str | None = None) -> Manifest:
        """Parse (and check) a manifest; with ``expect_id`` the bytes must hash to it."""
        if len(raw) > MAX_MANIFEST_BYTES:
            raise PayloadTooLarge("manifest over the size limit", field="manifest")
        if expect_id is not None and blake3.blake3(raw).hexdigest() != expect_id:
            raise InvalidInput("manifest bytes do not hash to its id", field="manifest")
        try:
            doc = json.loads(raw)
            manifest = cls._from_doc(doc)
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise InvalidInput(f"malformed manifest: {exc}", field="manifest") from exc
        if expect_id is not None and manifest.id != expect_id:
            raise InvalidInput("manifest is not in canonical form", field="manifest")
        return manifest

    @classmethod
    def _from_doc(cls, doc: dict[str, Any]) -> Manifest:
        if doc.get("format") != FORMAT:
            raise InvalidInput(f"unknown manifest format {doc.get('format')!r}", field="format")
        chunking = doc["chunking"]
        return cls(
            name=str(doc["name"]),
            version=str(doc["version"]),
            size=_int(doc["size"]),
            hash=str(doc["hash"]),
            chunks=tuple(ChunkRef(str(h), _int(o), _int(n)) for h, o, n in doc["chunks"]),
            params=ChunkParams(
                min_size=_int(chunking["min"]),
                avg_size=_int(chunking["avg"]),
                max_size=_int(chunking["max"]),
                normalization=_int(chunking["normalization"]),
            ),
        )


def _int(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool):
        raise InvalidInput(f"expected an integer, got {value!r}", field="manifest")
    return value


def _params_dict(params: ChunkParams) -> dict[str, int]:
    return {"min": params.min_size, "avg": params.avg_size, "max": params.max_size,
            "normalization": params.normalization}


def _check_names(name: str, version: str) -> None:
    if not _NAME.match(name):
        raise InvalidInput(f"bad image name {name!r}", field="name")
    if not _VERSION.match(version):
        raise InvalidInput(f"bad image version {version!r}", field="version")


def _check_hash(value: str, *, where: str) -> None:
    if not is_hash(value):
        raise InvalidInput(f"not a BLAKE3 hex digest: {value!r}", field=where)


def _check_chunks(chunks: Iterable[ChunkRef], size: int) -> None:
    expected = 0
    for index, chunk in enumerate(chunks):
        _check_hash(chunk.hash, where=f"chunks[{index}]")
        if chunk.offset != expected or not 0 < chunk.length <= MAX_CHUNK:
            raise InvalidInput("chunks must be contiguous and sized 1..16 MiB",
                               field=f"chunks[{index}]")
        expected += chunk.length
    if expected != size:
        raise InvalidInput(f"chunks cover {expected} bytes, size says {size}", field="size")


def manifest_from_pieces(
    pieces: Iterable[Piece],
    *,
    name: str,
    version: str,
    params: ChunkParams = DEFAULT_PARAMS,
    sink: Callable[[Piece], None] | None = None,
) -> Manifest:
    """Build a manifest from pieces in stream order, handing each piece to ``sink``."""
    whole = blake3.blake3()
    refs: list[ChunkRef] = []
    for piece in pieces:
        whole.update(piece.data)
        refs.append(ChunkRef(piece.hash, piece.offset, piece.length))
        if sink is not None:
            sink(piece)
    size = refs[-1].offset + refs[-1].length if refs else 0
    return Manifest(name=name, version=version, size=size, hash=whole.hexdigest(),
                    chunks=tuple(refs), params=params)


def build_manifest(
    stream: BinaryIO,
    *,
    name: str,
    version: str,
    params: ChunkParams = DEFAULT_PARAMS,
    sink: Callable[[Piece], None] | None = None,
) -> Manifest:
    """Chunk a byte stream into a manifest; ``sink`` receives every piece (to store it)."""
    pieces = chunk_stream(stream, params=params)
    return manifest_from_pieces(pieces, name=name, version=version, params=params, sink=sink)


def _dictionary(base: bytes) -> zstandard.ZstdCompressionDict:
    return zstandard.ZstdCompressionDict(base, dict_type=zstandard.DICT_TYPE_RAWCONTENT)


def encode_delta(raw: bytes, base: bytes) -> bytes:
    """Compress manifest bytes against an older manifest (as a zstd raw dictionary).

    A new version shares most chunk hashes with the old one, so this is far smaller than
    compressing it alone: a node that holds the old manifest fetches little more than the
    lines that changed.
    """
    return zstandard.ZstdCompressor(level=9, dict_data=_dictionary(base)).compress(raw)


def decode_delta(blob: bytes, base: bytes) -> bytes:
    """Undo :func:`encode_delta` given the same ``base`` bytes."""
    try:
        return zstandard.ZstdDecompressor(dict_data=_dictionary(base)).decompress(
            blob, max_output_size=MAX_MANIFEST_BYTES)
    except zstandard.ZstdError as exc:
        raise InvalidInput("manifest delta does not decode", field="manifest") from exc
