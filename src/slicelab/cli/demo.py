"""``slicelab demo``: the whole story on this machine, measured, then torn down (needs root).

The testbed modules are imported inside the command: the rest of the command line does
not pay for pyroute2 at start-up."""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table

from slicelab.domain.errors import PermissionDenied

from . import output

if TYPE_CHECKING:
    from slicelab.testbed.demo import DemoResult, World

__all__ = ["demo"]


class _Steps:
    """Prints each step as it starts and again with its time when it is done.

    No spinner: a refresh thread running while the testbed forks into namespaces can
    leave a child stuck on a lock it held, so every line is printed from this thread.
    """

    def __init__(self, console: Console) -> None:
        self.console = console
        self.current: str | None = None
        self.started = time.monotonic()

    def __call__(self, text: str) -> None:
        self.finish()
        self.current, self.started = text, time.monotonic()
        self.console.print(f"[dim]…[/] {text}")

    def finish(self) -> None:
        if self.current is not None:
            took = time.monotonic() - self.started
            self.console.print(f"[green]✓[/] {self.current} [dim]({took:.1f} s)[/]")
        self.current = None


def _table(result: DemoResult) -> Table:
    table = Table(title="Links of demo/line (TCP, iperf3, 3 s each way)")
    for name in ("link", "direction", "asked Mbit/s", "measured Mbit/s", "ratio",
                 "ping n1 -> n4"):
        table.add_column(name, justify="left" if name in ("link", "direction") else "right")
    rtt = f"{result.rtt_ms:.2f} ms" if result.rtt_ms is not None else "-"
    for i, f in enumerate(result.figures):
        mark = "" if f.ok else " [red]✗[/]"
        table.add_row(f.link, f.direction, f"{f.asked_mbps:g}", f"{f.measured_mbps:.1f}",
                      f"{f.ratio:.3f}{mark}", rtt if i == 0 else "")
    return table


def _figures(result: DemoResult) -> None:
    for f in result.figures:
        key = f"{f.link}_{f.direction.replace(' -> ', '_to_')}"
        output.plain(f"{key}_mbps: {f.measured_mbps:.1f} Mbit/s")
    if result.rtt_ms is not None:
        output.plain(f"ping_n1_n4_rtt: {result.rtt_ms:.3f} ms")
    output.plain(f"demo_time: {result.seconds:.1f} s")


def _kept(world: World) -> None:
    url = world.record.info["server"]
    output.say("[bold]left running[/] for you to explore:")
    output.plain(f"  export SLICELAB_URL={url} SLICELAB_TOKEN={world.member_token}")
    output.plain(f"  slicelab slice status {world.ref}")
    output.plain(f"  slicelab exec {world.ref} n1 -- ping -c 3 {_n4(world)}")
    output.plain(f"  slicelab ssh {world.ref} n1 -i {world.key_path}")
    output.say("tear it down with:")
    output.plain(f"  slicelab testbed down --dir {world.base_dir}")


def _n4(world: World) -> str:
    status = world.member.slice_status(world.ref)
    return status.sliver("n4").addresses[0].split("/")[0]


def demo(keep: Annotated[bool, typer.Option(
             "--keep", help="Leave the testbed and the slice running afterwards.")] = False,
         subnet: Annotated[str, typer.Option(help="The testbed hosts' private subnet.")] = (
             "172.31.249.0/24"),
         base_dir: Annotated[Path | None, typer.Option(
             "--dir", help="Where the testbed keeps its state (default: a new temp dir).")
         ] = None) -> None:
    """Run the whole story as root: a 3-host testbed, a slice of 4 slivers in a line over
    shaped links (100, 10, 100 Mbit/s), ping and iperf3 across it, then tear everything down
    and check that nothing is left. Exits non-zero if a figure is more than 10% off."""
    if os.geteuid() != 0:
        raise PermissionDenied("slicelab demo needs root: it makes network namespaces, links, "
                               "cgroups and mounts (run it with sudo)")
    from slicelab.testbed.demo import LINE_LINKS, run_demo
    from slicelab.testbed.processes import interrupt_on_term

    interrupt_on_term()
    base = base_dir or Path(tempfile.mkdtemp(prefix="slicelab-demo-"))
    console = Console(highlight=False)
    links = ", ".join(f"{a}-{b} {mbps} Mbit/s" for _, a, b, mbps in LINE_LINKS)
    console.print(f"[bold]slicelab demo[/]: slice demo/line, n1-n2-n3-n4, links {links}")
    steps = _Steps(console)
    result, world = run_demo(base_dir=base, subnet=subnet, keep=keep, progress=steps)
    steps.finish()
    _report(console, result, world)


def _report(console: Console, result: DemoResult, world: World | None) -> None:
    from slicelab.testbed.demo import TOLERANCE

    if result.figures:
        console.print(_table(result))
    for error in result.errors:
        output.error_line(f"error: {error}")
    for item in result.left:
        output.error_line(f"left behind: {item}")
    off = [f for f in result.figures if not f.ok]
    if off:
        output.error_line(f"error: {len(off)} figure(s) more than {TOLERANCE:.0%} off")
    if not result.left and world is None and not result.errors:
        console.print("[green]✓[/] nothing left: every netns, link, cgroup, mount, nft table "
                      "and process recorded is gone")
    if world is not None:
        _kept(world)
    _figures(result)
    if not result.ok:
        raise typer.Exit(1)
