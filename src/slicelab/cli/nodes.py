"""``slicelab node`` and ``slicelab image``: enroll and watch nodes, move their boot states,
build and list the images the aggregate serves.
"""

from __future__ import annotations

import shlex
from typing import Annotated

import typer

from slicelab.sdk.nodes import Image, Node

from . import output, session

__all__ = ["agent_command", "app", "images"]

app = typer.Typer(help="Enroll nodes, list them, move their boot states.", no_args_is_help=True)
images = typer.Typer(help="Images the aggregate serves to its nodes.", no_args_is_help=True)
NodeName = Annotated[str, typer.Argument(metavar="NAME", help="The node's name.")]
STATE_DIR = "/var/lib/slicelab/agent"


def agent_command(url: str, token: str) -> str:
    """The command line that enrolls and runs the agent on the new node."""
    argv = [
        "slicelab",
        "agent",
        "run",
        "--server",
        url,
        "--state-dir",
        STATE_DIR,
        "--enroll-token",
        token,
    ]
    return shlex.join(argv)


@app.command("enroll")
def enroll(
    site: Annotated[str, typer.Option(help="The node's site.")],
    name: Annotated[
        str | None, typer.Option(help="The node's name (default: its host name).")
    ] = None,
) -> None:
    """Make a one-time enrollment token; prints it and the agent's command line."""
    with session.connect() as sl:
        made = sl.enroll_node(site, name=name)
        url = sl.url
    output.say(
        f"enrollment token for a node of site [bold]{site}[/], "
        f"valid until {output.when(made.expires)}:"
    )
    output.plain(made.token)
    output.say("run on the node, as root:")
    output.plain(agent_command(url, made.token))


def _row(node: Node) -> list[str]:
    return [
        node.name,
        node.site,
        node.boot_state,
        node.host_ip or "-",
        output.when(node.last_seen) if node.last_seen else "never",
    ]


NODES = output.Listing("Nodes", ["NODE", "SITE", "STATE", "ADDRESS", "LAST SEEN"], _row)


@app.command("list")
def list_nodes(as_json: output.JsonFlag = False) -> None:
    """List the nodes with their boot states and last contact."""
    with session.connect() as sl:
        NODES.show(sl.nodes(), as_json=as_json)


@app.command("show")
def show(name: NodeName, as_json: output.JsonFlag = False) -> None:
    """Show one node and its inventory."""
    from .images import node_cache_rows

    with session.connect() as sl:
        node = sl.node(name)
        cache = node_cache_rows(sl, name)
    if as_json:
        output.print_json({**node.model_dump(mode="json"), "image_cache": cache})
        return
    inv = node.inventory
    devices = ", ".join(f"{d.get('name')} ({d.get('kind')})" for d in inv.get("devices", []))
    output.key_values(
        f"node {node.name}",
        [
            ("id", node.id),
            ("urn", node.urn),
            ("site", node.site),
            ("boot state", node.boot_state),
            ("address", node.host_ip or "-"),
            ("last seen", output.when(node.last_seen) if node.last_seen else "never"),
            ("auth failures", str(node.auth_failures)),
            ("cores", str(inv.get("cores", "-"))),
            ("memory MiB", str(inv.get("memory_mib", "-"))),
            ("disk GiB", str(inv.get("disk_gib", "-"))),
            ("devices", devices or "-"),
        ],
    )
    output.table("Image cache", ["IMAGE", "BYTES", "PINNED", "DOWNLOAD"], cache["rows"])


@app.command("set-state")
def set_state(
    name: NodeName, state: Annotated[str, typer.Argument(help="boot, reinstall, debug or disabled")]
) -> None:
    """Move a node to a boot state (operators)."""
    with session.connect() as sl:
        node = sl.set_node_state(name, state)
    output.say(f"node [bold]{node.name}[/] is now {node.boot_state}")


@images.command("build")
def build(name: Annotated[str, typer.Argument(help="The image to build (minimal).")]) -> None:
    """Build an image into the aggregate's data dir and serve it to nodes (operators)."""
    with session.connect() as sl:
        image = sl.build_image(name)
    output.say(f"image [bold]{image.name}[/]: {image.files} files, {image.bytes} bytes")


def _image_row(image: Image) -> list[str]:
    return [image.name, str(image.files), str(image.bytes)]


IMAGES = output.Listing("Images", ["IMAGE", "FILES", "BYTES"], _image_row)


@images.command("list")
def list_images(as_json: output.JsonFlag = False) -> None:
    """List the images the aggregate serves."""
    with session.connect() as sl:
        IMAGES.show(sl.images(), as_json=as_json)
