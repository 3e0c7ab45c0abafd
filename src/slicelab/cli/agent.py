"""``slicelab agent``: run a node agent, or remove everything one ever made.

``slicelab agent --server URL --enroll TOKEN`` and ``slicelab agent run ...`` are the same
command: the group runs the agent when it is given options and no subcommand. The agent's
modules are imported inside the commands, so that the rest of the command line does not
pay for them at start-up; ``python -m slicelab.cli.agent ARGS`` is ``slicelab agent ARGS``
without loading the rest of the command line (how the local testbed starts its agents).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from slicelab.domain.errors import InvalidInput

from . import output

if TYPE_CHECKING:
    from slicelab.agent.config import AgentConfig

__all__ = ["DEFAULT_STATE_DIR", "app", "main"]

DEFAULT_STATE_DIR = Path("/var/lib/slicelab/agent")

app = typer.Typer(help="Run the node agent of a physical node: 'slicelab agent --server URL "
                  "--enroll TOKEN' (the same as 'slicelab agent run ...').",
                  no_args_is_help=True, invoke_without_command=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Agent config (TOML or JSON).")]
ServerOpt = Annotated[str | None, typer.Option(help="The aggregate's URL.")]
StateOpt = Annotated[Path | None, typer.Option(
    "--state-dir", help=f"The agent's state dir (default with --server: {DEFAULT_STATE_DIR}).")]
PrefixOpt = Annotated[str | None, typer.Option(help="Prefix of the agent's kernel objects.")]
NameOpt = Annotated[str | None, typer.Option(help="The node's name.")]
TokenOpt = Annotated[str | None, typer.Option(
    "--enroll-token", "--enroll", help="One-time enrollment token (only before the first run).")]
TokenFileOpt = Annotated[Path | None, typer.Option(
    help="A file holding the enrollment token.")]


def _config(config: Path | None, server: str | None, state_dir: Path | None,
            prefix: str | None, name: str | None = None) -> AgentConfig:
    from slicelab.agent.config import config_from, load_config

    overrides = {"server": server, "state_dir": str(state_dir) if state_dir else None,
                 "prefix": prefix, "name": name}
    if config is not None:
        return load_config(config, **overrides)
    if server is None:
        raise InvalidInput("give --config or --server", field="config")
    overrides["state_dir"] = overrides["state_dir"] or str(DEFAULT_STATE_DIR)
    return config_from(**overrides)


def _token(token: str | None, token_file: Path | None) -> str | None:
    if token is None and token_file is not None:
        return token_file.read_text(encoding="utf-8").strip()
    return token


def _run(config: AgentConfig, token: str | None) -> None:
    from slicelab.agent.main import run_agent

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    run_agent(config, enroll_token=token)


@app.callback()
def agent(ctx: typer.Context, config: ConfigOpt = None, server: ServerOpt = None,
          state_dir: StateOpt = None, prefix: PrefixOpt = None, name: NameOpt = None,
          enroll_token: TokenOpt = None, enroll_token_file: TokenFileOpt = None) -> None:
    """Run the node agent (options as for 'run'), or one of the commands below."""
    if ctx.invoked_subcommand is not None:
        given = [config, server, state_dir, prefix, name, enroll_token, enroll_token_file]
        if any(v is not None for v in given):
            raise InvalidInput(f"give the options after '{ctx.invoked_subcommand}', not "
                               "before it", field="options")
        return
    _run(_config(config, server, state_dir, prefix, name),
         _token(enroll_token, enroll_token_file))


@app.command("run")
def run(config: ConfigOpt = None, server: ServerOpt = None, state_dir: StateOpt = None,
        prefix: PrefixOpt = None, name: NameOpt = None, enroll_token: TokenOpt = None,
        enroll_token_file: TokenFileOpt = None) -> None:
    """Enroll if needed, then converge to the aggregate's desired state until SIGTERM."""
    _run(_config(config, server, state_dir, prefix, name),
         _token(enroll_token, enroll_token_file))


@app.command("cleanup")
def cleanup(config: ConfigOpt = None, state_dir: StateOpt = None,
            prefix: PrefixOpt = None) -> None:
    """Remove every kernel object the agent ever made (slivers, links, its bridge, NAT)."""
    from slicelab.agent.main import cleanup as clean

    chosen = _config(config, "http://unused", state_dir, prefix)
    clean(chosen.state_dir, prefix=chosen.prefix, control_subnet=chosen.control_subnet)
    output.say(f"removed everything the agent at {chosen.state_dir} made")


def main(argv: list[str] | None = None) -> None:
    """``slicelab agent`` alone, with the command line's error edge."""
    from .edge import Group

    root = typer.Typer(cls=Group, pretty_exceptions_enable=False, add_completion=False)
    root.add_typer(app, name="agent")
    root(args=["agent", *(sys.argv[1:] if argv is None else argv)], prog_name="slicelab")


if __name__ == "__main__":
    main()
