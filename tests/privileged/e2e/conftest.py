"""One 3-host testbed for the end-to-end tests, with alice's slice demo/line applied.

Torn down by recorded ids at the end of the session, even when a test fails, and checked:
every object the testbed and its agents recorded must be gone.
"""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Iterator

import pytest

from slicelab.testbed.demo import World, close_world, open_world

SUBNET = "172.31.248.0/24"


@pytest.fixture(scope="session")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        pytest.skip("needs root and nsenter")
    base = tmp_path_factory.mktemp("e2e")
    made = open_world(base, subnet=SUBNET, progress=lambda _: None)
    left: list[str] = []
    try:
        yield made
    finally:
        began = time.monotonic()
        left = close_world(made)
        print(f"\ntestbed torn down in {time.monotonic() - began:.1f} s")
    assert not left, f"left behind: {left}"
