"""``slicelab testbed``: a multi-host testbed on this machine, hosts as network namespaces.

The testbed modules (netlink through pyroute2) are imported inside the commands, so that
the rest of the command line does not pay for them at start-up.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from slicelab.testbed.record import DEFAULT_BASE

from . import output

__all__ = ["app"]

app = typer.Typer(help="A local testbed: physical-node hosts as network namespaces.",
                  no_args_is_help=True)
BaseOpt = Annotated[Path, typer.Option("--dir", help="Where the testbed keeps its state.")]


@app.command("up")
def up(nodes: Annotated[int, typer.Option(min=1, max=99, help="How many hosts.")] = 2,
       server: Annotated[str | None, typer.Option(
           help="Use this server (reachable from the subnet) instead of starting one.")] = None,
       admin_token: Annotated[str | None, typer.Option(
           envvar="SLICELAB_TOKEN", help="An admin token for --server.")] = None,
       subnet: Annotated[str, typer.Option(help="The hosts' private subnet.")] = (
           "172.31.250.0/24"),
       base_dir: BaseOpt = DEFAULT_BASE) -> None:
    """Make the hosts, start a server if none is given, and one enrolled agent per host."""
    from slicelab.testbed.bed import testbed_up
    from slicelab.testbed.processes import interrupt_on_term

    interrupt_on_term()
    record = testbed_up(nodes, server_url=server, admin_token=admin_token, base_dir=base_dir,
                        subnet=subnet)
    output.say(f"testbed up: {nodes} hosts, server {record.info['server']}")
    if record.of_kind("server"):
        output.say("admin token (for 'slicelab login'):")
        output.plain(str(record.info["admin_token"]))


@app.command("status")
def status(base_dir: BaseOpt = DEFAULT_BASE) -> None:
    """The testbed's server and hosts."""
    from slicelab.testbed.bed import testbed_status

    found = testbed_status(base_dir=base_dir)
    if found is None:
        output.say("no testbed is up")
        return
    running = "running" if found["server_running"] else "not running"
    where = "local, " + running if found["local_server"] else "external"
    output.say(f"server {found['server']} ({where}); subnet {found['subnet']}")
    output.table("Hosts", ["host", "address", "namespace", "agent pid", "agent", "enrolled"],
                 [[h.name, h.address, h.netns, str(h.pid), "running" if h.running else "down",
                   "yes" if h.enrolled else "no"] for h in found["hosts"]])


@app.command("down")
def down(base_dir: BaseOpt = DEFAULT_BASE) -> None:
    """Stop the agents and the server, and remove every object the testbed made."""
    from slicelab.testbed.bed import testbed_down

    removed = testbed_down(base_dir=base_dir)
    output.say(f"testbed down: {removed} objects removed" if removed else "no testbed is up")
