"""The aggregate over HTTP, wired: a placement refused anywhere answers with its diagnosis
(and the SDK and CLI show it), slice status shows each sliver's expiry, the SDK's typed
resources and advertisement, settings for the sweep, and the heartbeat batcher's life."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aggregate_fakes import API, one_host_slice
from fastapi import FastAPI
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from slicelab.cli.main import app as cli
from slicelab.domain.errors import InvalidInput
from slicelab.domain.placement import PlacementFailed
from slicelab.sdk import Client
from slicelab.settings import Settings

runner = CliRunner()
URL = "http://testserver"
SLICE = f"{API}/projects/p/slices/s"


@pytest.fixture
def settings() -> Settings:
    return Settings(
        database_url="sqlite://", authority="test.slicelab", run_migrations=False, sweep_interval=0
    )


@pytest.fixture
def slice_env(cli_login: None, client: Any, admin: dict[str, str]) -> None:
    one_host_slice(client, admin, host_ip="172.31.253.2")


BIG = {"nodes": [{"name": "big", "cores": 64}]}


def test_slice_apply_refusal_carries_the_diagnosis(
    client: Any, admin: dict[str, str], slice_env: None
) -> None:
    r = client.put(f"{SLICE}/topology", headers=admin, json=BIG)
    assert r.status_code == 409
    assert r.headers["content-type"].startswith("application/problem+json")
    body = r.json()
    assert body["diagnosis"]["subject"] == "node 'big'"
    assert body["diagnosis"]["constraint"] == "capacity"
    assert [n["host"] for n in body["diagnosis"]["nearest"]] == ["host1"]
    assert body["detail"].startswith("cannot place node 'big'")


def test_the_sdk_raises_the_diagnosis_and_the_cli_explains_it(
    client: Any, admin: dict[str, str], slice_env: None, tmp_path: Path
) -> None:
    token = admin["Authorization"].removeprefix("Bearer ")
    with (
        Client(URL, token, transport=client._transport) as sl,
        pytest.raises(PlacementFailed) as err,
    ):
        sl.apply_topology("p/s", BIG)
    assert err.value.diagnosis.constraint == "capacity"
    assert err.value.diagnosis.nearest[0].host_name == "host1"
    topo = tmp_path / "big.json"
    topo.write_text(json.dumps(BIG))
    done = runner.invoke(cli, ["slice", "apply", "p/s", str(topo)])
    assert done.exit_code == 1
    assert "  constraint: capacity" in done.output
    assert "  nearest hosts:" in done.output and "    host1: " in done.output


def test_slice_status_shows_each_slivers_expiry(
    client: Any, admin: dict[str, str], slice_env: None
) -> None:
    r = client.put(f"{SLICE}/topology", headers=admin, json={"nodes": [{"name": "n1"}]})
    assert r.status_code == 200, r.text
    expires = r.json()["slivers"][0]["expires"]
    leases = client.get(f"{SLICE}/leases", headers=admin).json()
    assert datetime.fromisoformat(expires) == datetime.fromisoformat(leases[0]["end"])
    shown = runner.invoke(cli, ["slice", "status", "p/s"])
    assert shown.exit_code == 0, shown.output
    assert (
        "EXPIRES" in shown.output
        and datetime.fromisoformat(expires).strftime("%Y-%m-%d %H:%M") in shown.output
    )


def test_the_sdk_reads_resources_and_the_advertisement_typed(
    client: Any, admin: dict[str, str], slice_env: None
) -> None:
    token = admin["Authorization"].removeprefix("Bearer ")
    with Client(URL, token, transport=client._transport) as sl:
        view = sl.resources(site="lab")
        ad = sl.advertisement()
    (site,) = view.sites
    assert site.name == "lab" and site.nodes[0].name == "host1"
    assert site.nodes[0].capacity.cores > 0 and view.end > view.start
    assert [n["name"] for n in ad["nodes"]] == ["host1"]
    shown = runner.invoke(cli, ["resources", "--site", "lab"])
    assert shown.exit_code == 0 and "host1" in shown.output


def test_the_app_runs_the_heartbeat_batcher_until_shutdown(app: FastAPI) -> None:
    with TestClient(app):
        batcher = app.state.aggregate.ctx.heartbeats
        assert batcher is not None and batcher._thread is not None
    assert batcher._thread is None


def test_the_sweep_interval_is_a_setting_the_environment_overrides() -> None:
    assert Settings.load(db="x.db", env={}).sweep_interval == 30
    assert Settings.load(db="x.db", env={"SLICELAB_SWEEP_INTERVAL": "0"}).sweep_interval == 0
    assert (
        Settings.load(
            db="x.db", env={"SLICELAB_SWEEP_INTERVAL": "5"}, sweep_interval=7
        ).sweep_interval
        == 7
    )
    with pytest.raises(InvalidInput, match="SLICELAB_SWEEP_INTERVAL"):
        Settings.load(db="x.db", env={"SLICELAB_SWEEP_INTERVAL": "soon"})
