"""``slicelab agent``: run a node agent, or remove everything one ever made."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from slicelab.agent.config import AgentConfig, config_from, load_config
from slicelab.domain.errors import InvalidInput

from . import output

__all__ = ["app"]

app = typer.Typer(help="Run the node agent of a physical node.", no_args_is_help=True)

ConfigOpt = Annotated[Path | None, typer.Option("--config", help="Agent config (TOML or JSON).")]
ServerOpt = Annotated[str | None, typer.Option(help="The aggregate's URL.")]
StateOpt = Annotated[Path | None, typer.Option("--state-dir", help="The agent's state dir.")]
PrefixOpt = Annotated[str | None, typer.Option(help="Prefix of the agent's kernel objects.")]


def _config(config: Path | None, server: str | None, state_dir: Path | None,
            prefix: str | None, name: str | None = None) -> AgentConfig:
    overrides = {"server": server, "state_dir": str(state_dir) if state_dir else None,
                 "prefix": prefix, "name": name}
    if config is not None:
        return load_config(config, **overrides)
    if server is None or state_dir is None:
        raise InvalidInput("give --config, or --server and --state-dir", field="config")
    return config_from(**overrides)


@app.command("run")
def run(config: ConfigOpt = None, server: ServerOpt = None, state_dir: StateOpt = None,
        prefix: PrefixOpt = None,
        name: Annotated[str | None, typer.Option(help="The node's name.")] = None,
        enroll_token: Annotated[str | None, typer.Option(
            help="One-time enrollment token (only before the first run).")] = None,
        enroll_token_file: Annotated[Path | None, typer.Option(
            help="A file holding the enrollment token.")] = None) -> None:
    """Enroll if needed, then converge to the aggregate's desired state until SIGTERM."""
    from slicelab.agent.main import run_agent

    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    token = enroll_token
    if token is None and enroll_token_file is not None:
        token = enroll_token_file.read_text(encoding="utf-8").strip()
    run_agent(_config(config, server, state_dir, prefix, name), enroll_token=token)


@app.command("cleanup")
def cleanup(config: ConfigOpt = None, state_dir: StateOpt = None,
            prefix: PrefixOpt = None) -> None:
    """Remove every kernel object the agent ever made (slivers, links, its bridge, NAT)."""
    from slicelab.agent.main import cleanup as clean

    chosen = _config(config, "http://unused", state_dir, prefix)
    clean(chosen.state_dir, prefix=chosen.prefix, control_subnet=chosen.control_subnet)
    output.say(f"removed everything the agent at {chosen.state_dir} made")
