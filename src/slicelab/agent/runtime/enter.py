"""A tiny exec wrapper: join cgroups (and optionally detach), then exec argv.

``python -m slicelab.agent.runtime.enter [--detach] [--log FILE] --cgroup DIR... -- argv``

Every process of a sliver must be in its cgroups from its first instruction, so this
wrapper writes its own pid to each ``cgroup.procs`` before it execs (util-linux
``nsenter``/``unshare``, which then enter or make the namespaces). With ``--detach`` it
forks first and the parent exits at once, so the launched init is nobody's zombie.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

__all__ = ["main"]


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="slicelab-enter")
    parser.add_argument("--cgroup", action="append", default=[], type=Path)
    parser.add_argument("--detach", action="store_true")
    parser.add_argument("--log", type=Path)
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    if args.command[:1] == ["--"]:
        args.command = args.command[1:]
    if not args.command:
        parser.error("no command")
    return args


def main(argv: list[str] | None = None) -> None:
    args = _parse(sys.argv[1:] if argv is None else argv)
    if args.detach and os.fork() != 0:
        os._exit(0)
    if args.detach:
        os.setsid()
    for group in args.cgroup:
        (group / "cgroup.procs").write_text("0")
    if args.log is not None:
        fd = os.open(args.log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
    os.execvp(args.command[0], args.command)


if __name__ == "__main__":
    main()
