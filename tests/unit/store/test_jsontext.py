"""The database's JSON text: what the standard library reads back as written, compact, and a
value JSON cannot hold refused rather than written in a form only Python reads."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slicelab.store import jsontext

_SCALARS = st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | \
    st.floats(allow_nan=False, allow_infinity=False) | st.text()
_VALUES = st.recursive(_SCALARS, lambda inner: st.lists(inner, max_size=4)
                       | st.dictionaries(st.text(), inner, max_size=4), max_leaves=20)


@given(_VALUES)
def test_the_standard_library_reads_back_what_was_written(value: object) -> None:
    text = jsontext.dumps(value)
    assert isinstance(text, str)
    assert json.loads(text) == value


def test_the_text_is_compact_keeps_key_order_and_writes_tuples_as_lists() -> None:
    assert jsontext.dumps({"b": (1, 2.5), "a": None, "é": "\"q\" \\"}) == \
        '{"b":[1,2.5],"a":null,"é":"\\"q\\" \\\\"}'


@pytest.mark.parametrize("value", [{1, 2}, 2**64, {1: "x"}, object()])
def test_what_json_cannot_hold_is_refused(value: object) -> None:
    with pytest.raises(TypeError, match="not storable as JSON"):
        jsontext.dumps(value)


def test_nan_and_infinities_are_written_as_null() -> None:
    assert jsontext.dumps([math.nan, math.inf, -math.inf]) == "[null,null,null]"
