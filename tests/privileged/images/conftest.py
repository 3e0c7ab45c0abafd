"""One 2-host testbed for the image tests (module scope), each agent capped so that a big
image takes seconds to arrive; torn down by recorded ids even when a test fails, and
checked: every object the testbed and its agents recorded must be gone."""

from __future__ import annotations

import os
import shutil
import signal
from collections.abc import Iterator

import pytest
from image_bed import kill_agent, start_agent

from slicelab.testbed.demo import World, close_world, open_world

SUBNET = "172.31.246.0/24"
CAP_MBPS = 32  # each node's download cap: 32 MiB of random bytes take ~8.4 s


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if os.geteuid() != 0 or shutil.which("nsenter") is None:
        pytest.skip("needs root and nsenter")
    base = tmp_path_factory.mktemp("images")
    made = open_world(base, subnet=SUBNET, hosts=2, progress=lambda _: None)
    left: list[str] = []
    try:
        for host in ("host1", "host2"):
            kill_agent(made, host, sig=signal.SIGTERM)
            start_agent(made, host, bandwidth_cap_mbps=CAP_MBPS)
        yield made
    finally:
        left = close_world(made)
    assert not left, f"left behind: {left}"
