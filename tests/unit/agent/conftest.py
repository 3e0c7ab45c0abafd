"""Fixtures of the agent's channel tests: a fake aggregate and the agent's state dir."""

from __future__ import annotations

from pathlib import Path

import pytest

from slicelab.agent.state import AgentFiles
from slicelab.testbed.fakes import FakeAggregate


@pytest.fixture
def aggregate() -> FakeAggregate:
    return FakeAggregate()


@pytest.fixture
def files(tmp_path: Path) -> AgentFiles:
    return AgentFiles(tmp_path / "state")
