"""URN parse/format round trips and slice URNs."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slicelab.domain.errors import InvalidName, InvalidURN
from slicelab.domain.slices import slice_urn
from slicelab.domain.urn import URN, URN_TYPES, urn_text

label = st.from_regex(r"\A[A-Za-z0-9](?:[A-Za-z0-9_-]{0,10}[A-Za-z0-9])?\Z")
authority = st.builds(lambda parts, subs: ".".join(parts) + "".join(":" + s for s in subs),
                      st.lists(label, min_size=1, max_size=3), st.lists(label, max_size=2))
names = st.from_regex(r"\A[A-Za-z0-9._\-:%~/@]{1,40}\Z")
urns = st.builds(URN, authority, st.sampled_from(sorted(URN_TYPES)), names)


@given(urns)
def test_format_then_parse_is_identity(urn: URN) -> None:
    assert URN.parse(str(urn)) == urn


@given(urns)
def test_parse_then_format_is_identity(urn: URN) -> None:
    text = str(urn)
    assert str(URN.parse(text)) == text


@pytest.mark.parametrize("text", [
    "urn:publicid:IDN+a+slice", "urn:publicid:IDN+a+bogus+x", "urn:x:IDN+a+slice+x",
    "urn:publicid:IDN+a b+slice+x", "urn:publicid:IDN+a+slice+x y", "urn:publicid:IDN++slice+x",
])
def test_malformed_urns_are_refused(text: str) -> None:
    with pytest.raises(InvalidURN):
        URN.parse(text)


def test_slice_urn_has_project_as_sub_authority() -> None:
    urn = slice_urn("example.org", "proj", "exp1")
    assert str(urn) == "urn:publicid:IDN+example.org:proj+slice+exp1"
    assert urn.project == "proj"


def test_slice_urn_checks_the_slice_name() -> None:
    with pytest.raises(InvalidName, match="at most 19"):
        slice_urn("example.org", "proj", "a" * 20)


@given(urns)
def test_urn_text_is_the_urn_formatted(urn: URN) -> None:
    assert urn_text(urn.authority, urn.type, urn.name) == str(urn)


@pytest.mark.parametrize(("authority", "kind", "name"), [
    ("bad authority", "sliver", "s-1"), ("am", "Sliver", "s-1"), ("am", "nosuch", "s-1"),
    ("am", "sliver", "has space"), ("am", "sliver", "a+b"), ("am", "sliver", ""),
    ("am", "sliver", "x" * 600)])
def test_urn_text_refuses_what_urn_refuses(authority: str, kind: str, name: str) -> None:
    with pytest.raises(InvalidURN):
        URN(authority, kind, name)
    for _ in range(2):  # the second time from the checked prefix, if it was cached
        with pytest.raises(InvalidURN):
            urn_text(authority, kind, name)
