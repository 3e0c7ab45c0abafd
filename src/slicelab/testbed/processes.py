"""Processes of the testbed: started detached, identified by pid *and* start time.

A pid alone may be reused after a crash; :func:`stop` signals a process only if its
start time (field 22 of ``/proc/<pid>/stat``) is still the one recorded.

:func:`interrupt_on_term` makes SIGTERM clean up like Ctrl-C in the testbed's own commands
(``slicelab testbed up``, ``slicelab demo``) without harming the helpers pyroute2 forks.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from slicelab.domain.errors import Unavailable

__all__ = ["agent_argv", "alive", "interrupt_on_term", "slicelab_argv", "spawn", "start_time",
           "stop"]


def start_time(pid: int) -> int | None:
    """The process's start time in clock ticks since boot, None if there is no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])


def alive(pid: int, started: int | None) -> bool:
    return started is not None and start_time(pid) == started


def agent_argv() -> list[str]:
    """How to run ``slicelab agent`` of this installation without loading the rest of the
    command line (about a second less per start)."""
    return [sys.executable, "-P", "-m", "slicelab.cli.agent"]


def slicelab_argv() -> list[str]:
    """How to run the ``slicelab`` command of this installation."""
    script = Path(sys.executable).parent / "slicelab"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from slicelab.cli.main import main; main()"]


def spawn(argv: Sequence[str], *, log: Path) -> tuple[int, int]:
    """Start ``argv`` in a new session, output to ``log``; return (pid, start time)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as out:
        proc = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=out, stderr=out,
                                start_new_session=True)
    started = start_time(proc.pid)
    if started is None:
        raise Unavailable(f"{argv[0]} exited at once; see {log}")
    return proc.pid, started


def _reap(pid: int) -> None:
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def stop(pid: int, started: int | None, *, timeout: float = 10.0,
         again_after: float | None = None) -> None:
    """SIGTERM the recorded process, SIGKILL after ``timeout``; nothing if it is gone.

    ``again_after``: send SIGINT after that many seconds (a slicelab server waits for open
    requests, long-polls among them, after the first signal, and quits at once on a
    second one that is SIGINT).
    """
    if not alive(pid, started):
        return
    os.kill(pid, signal.SIGTERM)
    start = time.monotonic()
    repeat = again_after
    while alive(pid, started):
        _reap(pid)
        waited = time.monotonic() - start
        if repeat is not None and waited > repeat:
            os.kill(pid, signal.SIGINT)
            repeat = None
        if waited > timeout:
            os.kill(pid, signal.SIGKILL)
            start = time.monotonic()
        time.sleep(0.02)

def interrupt_on_term() -> None:
    """SIGTERM raises KeyboardInterrupt in this process, so it cleans up as Ctrl-C does.

    Only here: processes forked from this one (pyroute2's namespace helpers) get default
    SIGTERM and SIGINT handling, so they still die of either signal."""
    from slicelab.agent.main import default_signals_in_children

    owner = os.getpid()

    def handler(signum: int, frame: FrameType | None) -> None:
        if os.getpid() != owner:
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        raise KeyboardInterrupt

    default_signals_in_children()
    signal.signal(signal.SIGTERM, handler)
