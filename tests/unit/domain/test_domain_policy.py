"""The slice expiry policy."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from slicelab.domain.errors import InvalidInput, PolicyViolation
from slicelab.domain.policy import ExpiryPolicy

NOW = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
POLICY = ExpiryPolicy(default_days=7, max_days=185)


def test_new_slice_gets_the_default() -> None:
    assert POLICY.initial(NOW) == NOW + timedelta(days=7)


def test_new_slice_with_days_or_time() -> None:
    assert POLICY.initial(NOW, days=2.5) == NOW + timedelta(days=2.5)
    when = NOW + timedelta(days=30)
    assert POLICY.initial(NOW, expires=when) == when


def test_new_slice_past_the_maximum_names_the_limit() -> None:
    with pytest.raises(PolicyViolation, match="maximum of 185 days") as info:
        POLICY.initial(NOW, days=186)
    assert info.value.field == "days"


def test_expiry_in_the_past_is_refused() -> None:
    with pytest.raises(PolicyViolation, match="in the past") as info:
        POLICY.initial(NOW, expires=NOW - timedelta(seconds=1))
    assert info.value.field == "expires"


def test_naive_times_are_refused() -> None:
    with pytest.raises(InvalidInput, match="timezone"):
        POLICY.initial(NOW, expires=datetime(2025, 4, 1))


def test_renew_by_days_extends_the_current_expiry() -> None:
    current = NOW + timedelta(days=3)
    assert POLICY.renew(current, NOW, days=4) == NOW + timedelta(days=7)


def test_renew_of_an_expired_slice_counts_from_now() -> None:
    assert POLICY.renew(NOW - timedelta(days=1), NOW, days=1) == NOW + timedelta(days=1)


def test_renew_to_a_time_and_to_the_maximum() -> None:
    until = NOW + timedelta(days=100)
    assert POLICY.renew(NOW, NOW, until=until) == until
    assert POLICY.renew(NOW, NOW, to_max=True) == NOW + timedelta(days=185)


def test_renew_past_the_maximum_is_refused() -> None:
    with pytest.raises(PolicyViolation, match="185 days"):
        POLICY.renew(NOW + timedelta(days=180), NOW, days=6)
    with pytest.raises(PolicyViolation, match="185 days"):
        POLICY.renew(NOW, NOW, until=NOW + timedelta(days=185, seconds=1))


def test_renew_needs_exactly_one_way() -> None:
    with pytest.raises(InvalidInput, match="exactly one"):
        POLICY.renew(NOW, NOW)
    with pytest.raises(InvalidInput, match="exactly one"):
        POLICY.renew(NOW, NOW, days=1, to_max=True)


def test_limits_are_configurable() -> None:
    policy = ExpiryPolicy(default_days=1, max_days=10)
    assert policy.initial(NOW) == NOW + timedelta(days=1)
    with pytest.raises(PolicyViolation, match="maximum of 10 days"):
        policy.renew(NOW, NOW, days=11)
    with pytest.raises(InvalidInput):
        ExpiryPolicy(default_days=20, max_days=10)
