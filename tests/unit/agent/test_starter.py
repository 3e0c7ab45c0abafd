"""process.Starter: the launch thread of a build, with a fake launcher."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from slicelab.agent.runtime.errors import KernelError
from slicelab.agent.runtime.process import Held, Launch, Launcher, Overlay, Starter


def _launch(n: int) -> Launch:
    root = Path(f"/nonexistent/{n}")
    return Launch(root / "netns", Overlay(root, root, root, root), (root,), root / "log")


class _Fake:
    """Forks nothing: pids are the launches' numbers; the first spawn waits for ``gate``."""

    def __init__(self, *, fail_at: int | None = None) -> None:
        self.rounds: list[list[int]] = []
        self.entered = threading.Event()
        self.gate = threading.Event()
        self.warmed = False
        self.fail_at = fail_at

    def warm(self) -> None:
        self.warmed = True

    def spawn_many(self, launches: Sequence[Launch]) -> list[Held]:
        self.entered.set()
        self.gate.wait(5)
        numbers = [int(item.netns_path.parent.name) for item in launches]
        self.rounds.append(numbers)
        return [Held(n) for n in numbers]

    def release(self, held: Sequence[Held]) -> list[int]:
        if self.fail_at is not None and self.fail_at in [h.pid for h in held]:
            raise KernelError("cannot put the sliver init in its cgroups")
        return [h.pid for h in held]


def test_launches_given_while_a_round_runs_go_in_one_round_in_order() -> None:
    fake = _Fake()
    starter = Starter(fake)  # type: ignore[arg-type]
    starter.put([_launch(1)])
    assert fake.entered.wait(5)  # the first round is under way (held at the gate)
    starter.put([_launch(2), _launch(3)])
    starter.put([_launch(4)])
    fake.gate.set()
    starter.stop()
    assert fake.warmed
    assert starter.pids() == [1, 2, 3, 4]
    assert fake.rounds == [[1], [2, 3, 4]]


def test_a_failure_is_raised_by_pids_and_later_rounds_are_skipped() -> None:
    fake = _Fake(fail_at=2)
    fake.gate.set()
    starter = Starter(fake)  # type: ignore[arg-type]
    starter.put([_launch(1), _launch(2)])
    starter.stop()
    starter.put([_launch(3)])  # after stop: never started
    with pytest.raises(KernelError):
        starter.pids()
    assert 3 not in [n for r in fake.rounds for n in r]


def test_stop_without_launches() -> None:
    fake = _Fake()
    starter = Starter(fake)  # type: ignore[arg-type]
    starter.stop()
    assert starter.pids() == [] and fake.rounds == []


def test_the_real_launcher_has_what_the_starter_uses() -> None:
    for name in ("warm", "spawn_many", "release"):
        assert callable(getattr(Launcher, name))
