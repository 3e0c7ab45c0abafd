"""Signals of the agent process: SIGTERM stops the agent, and only the agent; the helper
processes pyroute2 forks (to enter a network namespace) still die of SIGTERM."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest
from pyroute2.process import ChildProcess

from slicelab.agent.main import StopSignals


def _linger(seconds: float) -> bytes:
    time.sleep(seconds)
    return b"done"


@pytest.fixture
def stopped() -> Iterator[threading.Event]:
    event = threading.Event()
    handlers = StopSignals(lambda signum: event.set()).install()
    try:
        yield event
    finally:
        handlers.uninstall()


def _exit_signal(pid: int, *, timeout: float) -> int | None:
    """The signal that ended ``pid`` within ``timeout`` s (None: it did not end so)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
        time.sleep(0.01)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    raise AssertionError(f"the forked helper {pid} survived SIGTERM for {timeout} s")


def test_sigterm_sets_stop_in_the_agent_process(stopped: threading.Event) -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    assert stopped.wait(2.0)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_pyroute2_helper_dies_of_the_signal_and_the_agent_goes_on(
        stopped: threading.Event, signum: int) -> None:
    child = ChildProcess(target=_linger, args=[30.0])
    child.run()
    try:
        time.sleep(0.2)  # the helper runs its target
        os.kill(child.pid, signum)
        assert _exit_signal(child.pid, timeout=3.0) == signum
    finally:
        child.ctrl_r.close()
        child.ctrl_w.close()
    assert not stopped.wait(0.3), "the helper's signal stopped the agent"


def test_uninstall_restores_the_previous_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    StopSignals(lambda signum: None).install().uninstall()
    assert signal.getsignal(signal.SIGTERM) == before
