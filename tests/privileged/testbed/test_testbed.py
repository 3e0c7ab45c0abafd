"""The local testbed for real: hosts as namespaces, real agents, a real server."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from pyroute2 import IPRoute, netns

from slicelab.testbed import bed as testbed
from slicelab.testbed import processes
from slicelab.testbed.record import TestbedRecord

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
    pytest.mark.skipif(shutil.which("nsenter") is None, reason="needs nsenter"),
]
SUBNET = "172.31.252.0/24"
_RECEIVED = re.compile(r"desired generation (\d+) received at ([0-9.]+)")


def _links() -> set[str]:
    with IPRoute() as ipr:
        return {str(link.get("ifname")) for link in ipr.get_links()}


def _mine(names: set[str], tag: str) -> set[str]:
    return {n for n in names if f"tb{tag}" in n}


@pytest.fixture(scope="module")
def bed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestbedRecord]:
    base = tmp_path_factory.mktemp("testbed")
    pids: list[tuple[int, int]] = []
    record: TestbedRecord | None = None
    try:
        record = testbed.testbed_up(2, base_dir=base, subnet=SUBNET, timeout=90)
        pids = [(i.data["pid"], i.data["start"]) for i in record.items if "pid" in i.data]
        yield record
    finally:
        began = time.monotonic()
        testbed.testbed_down(base_dir=base)
        took = time.monotonic() - began
        print(f"\ntestbed down in {took:.1f} s")
    assert took < 20, f"testbed down took {took:.1f} s"
    tag = record.info["tag"] if record else ""
    assert not _mine(set(netns.listnetns()), tag)
    assert not _mine(_links(), tag)
    assert not [p for p in pids if processes.alive(*p)]
    assert not (base / "testbed.json").exists()


def _api(record: TestbedRecord, method: str, path: str, body: object = None) -> httpx.Response:
    return httpx.request(method, f"{record.info['server']}/api/v1{path}", json=body,
                         headers={"Authorization": f"Bearer {record.info['admin_token']}"},
                         timeout=30)


def _received(log: Path, generation: int, *, timeout: float = 10.0) -> float:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for match in _RECEIVED.finditer(log.read_text()):
            if int(match.group(1)) >= generation:
                return float(match.group(2))
        time.sleep(0.01)
    raise AssertionError(f"the agent did not see generation {generation}")


def _generation(log: Path) -> int:
    found = [int(m.group(1)) for m in _RECEIVED.finditer(log.read_text())]
    return max(found, default=0)


def test_agents_are_enrolled_and_polling(bed: TestbedRecord) -> None:
    status = testbed.testbed_status(base_dir=bed.path.parent)
    assert status is not None and status["server_running"]
    assert [h.name for h in status["hosts"]] == ["host1", "host2"]
    assert all(h.running and h.enrolled for h in status["hosts"])
    nodes = {n["name"]: n for n in _api(bed, "GET", "/nodes").json()}
    assert set(nodes) == {"host1", "host2"}
    assert nodes["host1"]["host_ip"] == "172.31.252.2"
    deadline = time.monotonic() + 30
    while not all(n["last_seen"] for n in nodes.values()):
        assert time.monotonic() < deadline, "an agent never polled"
        time.sleep(0.1)
        nodes = {n["name"]: n for n in _api(bed, "GET", "/nodes").json()}


def test_a_desired_state_change_reaches_the_agent_fast(bed: TestbedRecord) -> None:
    log = bed.path.parent / "hosts" / "host1" / "agent.log"
    after_commit, after_request = [], []
    for state in ("debug", "boot", "debug", "boot", "debug", "boot"):
        seen = _generation(log)
        time.sleep(0.2)
        sent = time.time()
        assert _api(bed, "POST", "/nodes/host1/state", {"state": state}).status_code == 200
        committed = time.time()
        received = _received(log, seen + 1)
        after_commit.append(received - committed)
        after_request.append(received - sent)
    median = statistics.median(after_commit)
    print(f"\ncommit acknowledged -> agent has it: median {median * 1000:.1f} ms "
          f"(negative: before the operator's response); request sent -> agent has it: "
          f"median {statistics.median(after_request) * 1000:.1f} ms")
    assert median < 0.1


def test_the_state_file_names_every_process_by_pid(bed: TestbedRecord) -> None:
    record = TestbedRecord.load(bed.path)
    assert record is not None
    pids = [(i.data["pid"], i.data["start"]) for i in record.items if "pid" in i.data]
    assert len(pids) == 3
    assert all(processes.alive(pid, start) for pid, start in pids)


def _children(pid: int) -> list[int]:
    found = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            lines = status.read_text().splitlines()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if any(line.split() == ["PPid:", str(pid)] for line in lines):
            found.append(int(status.parent.name))
    return found


def test_an_agent_ends_on_sigterm_with_its_helpers(bed: TestbedRecord) -> None:
    """SIGTERM alone (no SIGKILL) ends an agent promptly, and no process it forked stays."""
    record = TestbedRecord.load(bed.path)
    assert record is not None
    item = next(i for i in record.of_kind("agent") if i.name == "host2")
    pid, start = item.data["pid"], item.data["start"]
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + 5.0
    while processes.alive(pid, start) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert not processes.alive(pid, start), "the agent ignored SIGTERM for 5 s"
    assert not _children(pid)
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)  # our child: reap it


def test_the_server_stops_at_once_while_agents_long_poll(bed: TestbedRecord) -> None:
    """The last test: it stops the server (the teardown copes with a server gone)."""
    server = TestbedRecord.load(bed.path)
    assert server is not None
    item = server.of_kind("server")[0]
    time.sleep(0.5)  # both agents are in a long-poll (wait 25 s)
    began = time.monotonic()
    processes.stop(item.data["pid"], item.data["start"], again_after=0.5)
    took = time.monotonic() - began
    print(f"\nserver stopped in {took:.2f} s")
    assert took < 3.0
