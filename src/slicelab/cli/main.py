"""The ``slicelab`` command: one sub-command group per module, one error edge for all."""

from __future__ import annotations

import typer

from . import account, keys, members, projects, server, slices, tokens
from .edge import Group

__all__ = ["app", "main"]

app = typer.Typer(
    cls=Group,
    name="slicelab",
    help="slicelab: slices of a shared network testbed, from the command line.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.command("server")(server.server)
app.add_typer(server.admin, name="admin")
app.command("login")(account.login)
app.command("whoami")(account.whoami)
app.add_typer(keys.app, name="key")
app.add_typer(tokens.app, name="token")
app.add_typer(members.app, name="member")
app.add_typer(projects.app, name="project")
app.add_typer(slices.app, name="slice")


def main() -> None:
    """Entry point of the ``slicelab`` console script."""
    app()


from . import agent as _agent_cli  # noqa: E402
from . import testbed as _testbed_cli  # noqa: E402

app.add_typer(_agent_cli.app, name="agent")
app.add_typer(_testbed_cli.app, name="testbed")

from . import access as _access_cli  # noqa: E402
from . import nodes as _nodes_cli  # noqa: E402
from . import sites as _sites_cli  # noqa: E402
from . import slice_ops as _slice_ops_cli  # noqa: E402

app.add_typer(_sites_cli.app, name="site")
app.add_typer(_nodes_cli.app, name="node")
from . import files as _files_cli  # noqa: E402
from . import images as _images_cli  # noqa: E402

app.add_typer(_images_cli.app, name="image")
app.add_typer(_files_cli.app, name="file")
_slice_ops_cli.register(slices.app)
app.command("exec")(_access_cli.exec_command)
app.command("ssh")(_access_cli.ssh)

from . import demo as _demo_cli  # noqa: E402

app.command("demo")(_demo_cli.demo)

from . import resources as _resources_cli  # noqa: E402

app.add_typer(_resources_cli.app, name="resources")
app.add_typer(_resources_cli.rspec, name="rspec")

from . import allocation as _allocation_cli  # noqa: E402
from . import resources_slot as _resources_slot_cli  # noqa: E402

_allocation_cli.register(slices.app)
_allocation_cli.register_limits(projects.app, _sites_cli.app)
_resources_slot_cli.register(_resources_cli.app)
