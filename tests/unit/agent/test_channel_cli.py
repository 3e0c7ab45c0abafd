"""``slicelab agent``: the documented short form runs the agent like ``slicelab agent run``;
the command line does not load pyroute2 at start-up."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from slicelab.agent import main as agent_main
from slicelab.agent.config import AgentConfig
from slicelab.cli.agent import DEFAULT_STATE_DIR
from slicelab.cli.main import app


@pytest.fixture
def runs(monkeypatch: pytest.MonkeyPatch) -> list[tuple[AgentConfig, str | None]]:
    calls: list[tuple[AgentConfig, str | None]] = []

    def fake(config: AgentConfig, *, enroll_token: str | None = None) -> None:
        calls.append((config, enroll_token))

    monkeypatch.setattr(agent_main, "run_agent", fake)
    return calls


def _invoke(*argv: str) -> Any:
    return CliRunner().invoke(app, list(argv))


def test_the_short_form_runs_the_agent(runs: list[tuple[AgentConfig, str | None]]) -> None:
    result = _invoke("agent", "--server", "http://am.example.org:8470", "--enroll", "slt_x")
    assert result.exit_code == 0, result.output
    config, token = runs[0]
    assert config.server == "http://am.example.org:8470" and token == "slt_x"
    assert config.state_dir == DEFAULT_STATE_DIR


def test_run_and_the_short_form_agree(runs: list[tuple[AgentConfig, str | None]],
                                      tmp_path: Path) -> None:
    options = ["--server", "http://am:8470", "--state-dir", str(tmp_path), "--name", "h1",
               "--prefix", "zz"]
    assert _invoke("agent", "run", *options, "--enroll-token", "t1").exit_code == 0
    assert _invoke("agent", *options, "--enroll", "t1").exit_code == 0
    assert runs[0] == runs[1]
    assert runs[0][0].state_dir == tmp_path and runs[0][0].prefix == "zz"


def test_the_token_may_come_from_a_file(runs: list[tuple[AgentConfig, str | None]],
                                        tmp_path: Path) -> None:
    (tmp_path / "token").write_text("slt_file\n")
    result = _invoke("agent", "--server", "http://am:8470", "--state-dir", str(tmp_path),
                     "--enroll-token-file", str(tmp_path / "token"))
    assert result.exit_code == 0, result.output
    assert runs[0][1] == "slt_file"


def test_options_before_a_subcommand_are_refused(
        runs: list[tuple[AgentConfig, str | None]]) -> None:
    result = _invoke("agent", "--server", "http://am:8470", "run")
    assert result.exit_code != 0 and not runs


def test_without_options_the_group_shows_help(
        runs: list[tuple[AgentConfig, str | None]]) -> None:
    result = _invoke("agent")
    assert "run" in result.output and "cleanup" in result.output and not runs


def test_the_command_line_starts_without_pyroute2() -> None:
    code = "import sys, slicelab.cli.main; print('pyroute2' in sys.modules)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, timeout=60)
    assert done.stdout.strip() == "False"


def test_the_agent_alone_runs_as_a_module(runs: list[tuple[AgentConfig, str | None]]) -> None:
    from slicelab.cli.agent import main

    with pytest.raises(SystemExit) as done:
        main(["--server", "http://am:8470", "--enroll", "t2"])
    assert done.value.code == 0 and runs[0][1] == "t2"
    with pytest.raises(SystemExit) as refused:
        main(["--server", "http://am:8470", "cleanup"])
    assert refused.value.code == 1
