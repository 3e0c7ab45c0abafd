"""Property tests of resource vector arithmetic."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from slicelab.domain.resources import Resources

small = st.integers(min_value=-10_000, max_value=10_000)
devices = st.lists(st.tuples(st.sampled_from(["gpu", "fpga", "sdr"]), small), max_size=4)
vectors = st.builds(Resources, small, small, small, small, devices)
non_negative = st.builds(Resources, *(st.integers(0, 10_000) for _ in range(4)),
                         st.lists(st.tuples(st.sampled_from(["gpu", "sdr"]),
                                            st.integers(0, 5)), max_size=3))


@given(vectors, vectors, vectors)
def test_addition_is_associative_and_commutative(a: Resources, b: Resources, c: Resources) -> None:
    assert (a + b) + c == a + (b + c)
    assert a + b == b + a


@given(vectors, vectors)
def test_subtraction_is_the_inverse_of_addition(a: Resources, b: Resources) -> None:
    assert (a + b) - b == a
    assert (a - a).is_zero()
    assert a + Resources() == a


@given(non_negative, non_negative)
def test_le_agrees_with_shortfall_and_addition(a: Resources, b: Resources) -> None:
    assert a <= a + b
    assert (a <= b) == (not a.shortfall(b))
    if a <= b and b <= a:
        assert a == b


@given(non_negative, non_negative, non_negative)
def test_le_is_transitive(a: Resources, b: Resources, c: Resources) -> None:
    if a <= b and b <= c:
        assert a <= c


def _checked(cpu: int, mem: int, disk: int, bw: int, devices: list[tuple[str, int]]) -> Resources:
    """The same vector through the validating constructor (the oracle for the fast paths)."""
    return Resources(cpu, mem, disk, bw, devices)


@given(vectors, vectors, st.integers(-3, 3))
def test_arithmetic_gives_what_the_checked_constructor_gives(a: Resources, b: Resources,
                                                             k: int) -> None:
    parts = (a.cpu_milli, a.memory_mib, a.disk_gib, a.bandwidth_mbps)
    others = (b.cpu_milli, b.memory_mib, b.disk_gib, b.bandwidth_mbps)
    assert a + b == _checked(*(x + y for x, y in zip(parts, others, strict=True)),
                             [*a.devices, *b.devices])
    assert a - b == _checked(*(x - y for x, y in zip(parts, others, strict=True)),
                             [*a.devices, *((n, -c) for n, c in b.devices)])
    assert a * k == _checked(*(x * k for x in parts), [(n, c * k) for n, c in a.devices])
    assert -a == _checked(*(-x for x in parts), [(n, -c) for n, c in a.devices])
    assert (a - a).is_zero() and (a.is_zero() == (a == Resources()))


@given(vectors, non_negative)
def test_fits_in_is_an_elementwise_le(a: Resources, b: Resources) -> None:
    assert a.fits_in(b) == (b - a).is_non_negative()
    assert bool(a.shortfall(b)) == (not a.fits_in(b))
