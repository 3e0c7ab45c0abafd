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
