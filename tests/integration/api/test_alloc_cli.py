"""The lease commands of the CLI against the real app: allocate, provision, start, leases,
lease-renew, find-slot, quotas and site limits; a request that does not fit is explained."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from aggregate_fakes import MINIMAL_RSPEC, one_host_slice
from typer.testing import CliRunner

from slicelab.cli.main import app as cli
from slicelab.settings import Settings

runner = CliRunner()
URL = "http://testserver"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return replace(settings, sweep_interval=0)


@pytest.fixture
def cli_env(cli_login: None, client: Any, admin: dict[str, str]) -> None:
    one_host_slice(client, admin, host_ip="172.31.252.2")


def _run(*args: str) -> Any:
    result = runner.invoke(cli, list(args))
    return result


def test_allocate_provision_start_renew_from_the_command_line(
    cli_env: None, tmp_path: Path
) -> None:
    manifest = tmp_path / "manifest.xml"
    done = _run(
        "slice",
        "allocate",
        "p/s",
        "--rspec",
        str(MINIMAL_RSPEC),
        "--duration",
        "2h",
        "--manifest-out",
        str(manifest),
    )
    assert done.exit_code == 0, done.output
    assert "geni_allocated" in done.output and "expires" in done.output
    assert "sliver_id=" in manifest.read_text()
    assert "geni_notready" in _run("slice", "provision", "p/s").output
    assert "geni_configuring" in _run("slice", "start", "p/s").output
    again = _run("slice", "start", "p/s")
    assert again.exit_code != 0 and "geni_configuring" in again.output
    renewed = _run("slice", "lease-renew", "p/s", "--by", "1h")
    assert renewed.exit_code == 0 and "renewed until" in renewed.output
    listed = _run("slice", "leases", "p/s", "--json")
    (lease,) = json.loads(listed.output)
    assert lease["slivers"][0]["client_id"] == "foo"


def test_find_slot_quota_limits_and_a_refusal_explained(cli_env: None, tmp_path: Path) -> None:
    topo = tmp_path / "topo.json"
    topo.write_text(json.dumps({"nodes": [{"name": "big", "cores": 8}]}))
    refused = _run("slice", "allocate", "p/s", "--topology", str(topo), "--duration", "1h")
    assert refused.exit_code != 0
    assert "cannot place node 'big': capacity" in refused.output
    assert "host1" in refused.output
    topo.write_text(json.dumps({"nodes": [{"name": "n1"}]}))
    slot = _run("resources", "find-slot", "--topology", str(topo), "--duration", "3h", "--json")
    assert slot.exit_code == 0, slot.output
    assert json.loads(slot.output)["hosts"] == {"n1": "host1"}
    quota = _run("project", "quota", "p", "--cores", "4", "--longest-lease", "1d")
    assert quota.exit_code == 0 and "86400s" in quota.output
    limits = _run("site", "limits", "lab", "--slivers-per-slice", "3")
    assert limits.exit_code == 0 and "slivers_per_slice" in limits.output
    long = _run("slice", "allocate", "p/s", "--topology", str(topo), "--duration", "2d")
    assert long.exit_code != 0 and "at most 1 day" in long.output


def test_find_slot_says_why_no_window_fits(cli_env: None, tmp_path: Path) -> None:
    topo = tmp_path / "topo.json"
    topo.write_text(json.dumps({"nodes": [{"name": "big", "cores": 64}]}))
    refused = _run("resources", "find-slot", "--topology", str(topo), "--duration", "1h")
    assert refused.exit_code != 0
    assert "cannot place node 'big'" in refused.output
    assert "constraint: capacity" in refused.output and "no window of" in refused.output
    assert "host1:" in refused.output and "cores" in refused.output
