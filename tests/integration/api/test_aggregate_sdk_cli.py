"""The SDK and the command line against the real app: sites, nodes, slices, exec, ssh."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aggregate_fakes import FakeAgent, boot, enroll
from typer.testing import CliRunner

from slicelab.cli import access
from slicelab.cli.main import app as cli
from slicelab.identity.nodekey import decode_key
from slicelab.sdk import Client

runner = CliRunner()
URL = "http://testserver"


@pytest.fixture
def sdk(client: Any, admin: dict[str, str]) -> Iterator[Client]:
    token = admin["Authorization"].removeprefix("Bearer ")
    with Client(URL, token, transport=client._transport) as sl:
        yield sl


def _answer_commands(agent: FakeAgent, stop: threading.Event) -> None:
    after = 0
    while not stop.is_set():
        r = agent.desired(after=after, wait=1)
        if r.status_code == 200:
            after = r.json()["generation"]
            for command in r.json()["commands"]:
                agent.post(
                    f"/agent/v1/commands/{command['id']}/result",
                    {"exit_code": 7, "stdout": "out:" + " ".join(command["argv"]), "stderr": "err"},
                )


def _ready(agent: FakeAgent, port: int) -> None:
    doc = agent.desired().json()
    slivers = [
        {
            "sliver_id": s["sliver_id"],
            "state": "ready",
            "error": None,
            "ssh": {"host": "172.31.250.2", "port": port},
        }
        for s in doc["slivers"]
    ]
    assert (
        agent.report(doc["generation"], host_ip="172.31.250.2", slivers=slivers).status_code == 204
    )


def test_sdk_builds_submits_waits_and_execs(
    client: Any, admin: dict[str, str], sdk: Client
) -> None:
    sdk.create_site("lab")
    assert [s.name for s in sdk.sites()] == ["lab"]
    enrollment = sdk.enroll_node("lab", name="host1")
    r = client.post(
        "/agent/v1/enroll",
        json={
            "token": enrollment.token,
            "hostname": "x",
            "inventory": {"cores": 4, "memory_mib": 4096},
        },
    )
    out = r.json()
    agent = FakeAgent(client, out["node_id"], decode_key(out["node_key"]), out["node_name"])
    boot(agent, host_ip="172.31.250.2", cores=4)
    assert sdk.node("host1").boot_state == "boot"
    sdk.create_project("p")
    sdk.create_slice("p/s")
    handle = sdk.slice("p/s")
    handle.add_node("n1", cores=1)
    handle.add_node("n2", cores=1)
    handle.add_link("l1", ["n1", "n2"], capacity_mbps=50)
    submitted = handle.submit(wait=False)
    assert {s.client_id for s in submitted.slivers} == {"n1", "n2"}
    assert not submitted.settled
    _ready(agent, 20000)
    seen: list[int] = []
    final = handle.wait(
        timeout=5, interval=0.05, on_progress=lambda st: seen.append(len(st.slivers))
    )
    assert final.settled and seen and final.sliver("n1").ssh_command
    stop = threading.Event()
    answering = threading.Thread(target=_answer_commands, args=(agent, stop))
    answering.start()
    try:
        result = handle.exec("n2", ["echo", "hi"], timeout=5)
    finally:
        stop.set()
        answering.join(5)
    assert (result.exit_code, result.stdout, result.stderr) == (7, "out:echo hi", "err")
    handle.release()
    assert sdk.slice_status("p/s").slivers == ()


def test_cli_sites_nodes_slices_exec_and_ssh(
    client: Any,
    admin: dict[str, str],
    cli_login: None,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert runner.invoke(cli, ["site", "create", "lab"]).exit_code == 0
    made = runner.invoke(cli, ["node", "enroll", "--site", "lab", "--name", "host9"])
    assert made.exit_code == 0, made.stderr
    assert "slicelab agent run --server http://testserver" in made.stdout
    agent = enroll(client, admin, "host1", host_ip="172.31.250.2")
    boot(agent, host_ip="172.31.250.2")
    listed = runner.invoke(cli, ["node", "list"])
    assert "host1" in listed.stdout and "boot" in listed.stdout
    moved = runner.invoke(cli, ["node", "set-state", "host1", "install"])
    assert moved.exit_code == 1 and moved.stderr.startswith("error: ")
    client.post("/api/v1/projects", headers=admin, json={"name": "p"})
    client.post("/api/v1/projects/p/slices", headers=admin, json={"name": "s"})
    topo = tmp_path / "topo.yaml"
    topo.write_text("nodes:\n  - name: n1\n    cores: 1\n")
    applied = runner.invoke(cli, ["slice", "apply", "p/s", str(topo)])
    assert applied.exit_code == 0, applied.stderr
    assert "n1" in applied.stdout and "host1" in applied.stdout
    _ready(agent, 20010)
    status = runner.invoke(cli, ["slice", "status", "p/s"])
    assert "ready" in status.stdout and "ssh -p 20010" in status.stdout
    stop = threading.Event()
    answering = threading.Thread(target=_answer_commands, args=(agent, stop))
    answering.start()
    try:
        ran = runner.invoke(cli, ["exec", "p/s", "n1", "--", "ls", "-l"])
    finally:
        stop.set()
        answering.join(5)
    assert ran.exit_code == 7 and ran.stdout == "out:ls -l" and ran.stderr == "err"
    called: list[list[str]] = []
    monkeypatch.setattr(access.os, "execvp", lambda f, argv: called.append(argv))
    key = tmp_path / "id"
    assert runner.invoke(cli, ["ssh", "p/s", "n1", "-i", str(key)]).exit_code == 0
    assert called == [["ssh", "-p", "20010", "-i", str(key), "root@172.31.250.2"]]
