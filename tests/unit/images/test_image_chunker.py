from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from slicelab.domain.errors import InvalidInput
from slicelab.images.chunker import ChunkParams, Piece, chunk_bytes, hash_bytes

SMALL = ChunkParams(min_size=256, avg_size=1280, max_size=4096)


def _data(seed: int, size: int) -> bytes:
    return random.Random(seed).randbytes(size)


def test_pieces_cover_the_input_in_order_within_bounds() -> None:
    data = _data(1, 300_000)
    pieces = list(chunk_bytes(data, params=SMALL))
    assert b"".join(p.data for p in pieces) == data
    assert [p.offset for p in pieces] == [sum(q.length for q in pieces[:i])
                                         for i in range(len(pieces))]
    assert all(SMALL.min_size <= p.length <= SMALL.max_size for p in pieces[:-1])
    assert all(p.hash == hash_bytes(p.data) for p in pieces)


def test_default_average_is_near_64_kib() -> None:
    pieces = list(chunk_bytes(_data(2, 8 << 20)))
    average = (8 << 20) / len(pieces)
    assert 48 * 1024 < average < 80 * 1024


def _changed_run(before: list[Piece], after: list[Piece]) -> tuple[int, int]:
    """Start and end offsets (in ``after``) of the pieces not found in ``before``."""
    old = {p.hash for p in before}
    new = [p for p in after if p.hash not in old]
    if not new:
        return (0, 0)
    return new[0].offset, new[-1].offset + new[-1].length


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 2**32), where=st.floats(0, 1),
       insert=st.binary(min_size=1, max_size=300))
def test_boundaries_survive_an_insertion(seed: int, where: float, insert: bytes) -> None:
    data = _data(seed, 256 * 1024)
    at = int(where * len(data))
    changed = data[:at] + insert + data[at:]
    before = list(chunk_bytes(data, params=SMALL))
    after = list(chunk_bytes(changed, params=SMALL))
    # Every piece that ends before the insertion is untouched, except the old last piece: the
    # end of input cut it, and more input may now cut it earlier ...
    limit = min(at, before[-1].offset + 1)
    assert [p for p in after if p.offset + p.length < limit] == [
        p for p in before if p.offset + p.length < limit]
    # ... the new pieces form one run that covers the insertion ...
    start, end = _changed_run(before, after)
    fresh = [p for p in after if start <= p.offset < end]
    assert all(p.hash not in {q.hash for q in before} for p in fresh)
    assert start <= at and end >= at + len(insert)
    # ... and the cut points fall back into step soon after: the tail is shared.
    assert end - start <= len(insert) + 24 * SMALL.avg_size
    if at < len(data) - 24 * SMALL.avg_size:
        assert after[-1].hash == before[-1].hash


def test_identical_content_gives_identical_pieces() -> None:
    data = _data(3, 200_000)
    assert [p.hash for p in chunk_bytes(data)] == [p.hash for p in chunk_bytes(bytes(data))]


@pytest.mark.parametrize(("low", "avg", "high"), [(0, 1024, 4096), (2048, 1024, 4096),
                                                  (256, 8192, 4096)])
def test_bad_params_are_refused(low: int, avg: int, high: int) -> None:
    with pytest.raises(InvalidInput):
        ChunkParams(min_size=low, avg_size=avg, max_size=high)
