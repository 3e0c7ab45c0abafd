"""Fixtures of the RSpec tests."""

from __future__ import annotations

from pathlib import Path

import pytest
from rspec_offers import SHARED, lab_offer

from slicelab.rspec import Offer


@pytest.fixture
def offer() -> Offer:
    return lab_offer()


@pytest.fixture
def shared() -> Path:
    if not SHARED.exists():
        pytest.skip("shared RSpec examples not available")
    return SHARED
