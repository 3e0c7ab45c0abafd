"""The aggregate on a real local testbed (two hosts, real agents, the sweep every second):

* an advance reservation made ~25 s ahead starts by itself (slivers ready on the nodes with no
  further call) and is torn down at its end (a 30 s lease): the agents' ledgers empty again;
* ``slicelab resources find-slot`` finds the first free window around an existing booking.

The testbed is torn down by recorded ids at the end, even when a test fails, and every object
it recorded must be gone.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from slicelab.sdk.leases import Leases
from slicelab.testbed import processes
from slicelab.testbed.demo import World, close_world, open_world, wait_released
from slicelab.testbed.leftovers import host_owners

pytestmark = [pytest.mark.privileged,
              pytest.mark.skipif(os.geteuid() != 0, reason="needs root")]

SUBNET = "172.31.244.0/24"
AHEAD = timedelta(seconds=25)
LEASE = "30s"
PAIR = {"nodes": [{"name": "a", "cores": 0.5, "memory": 128},
                  {"name": "b", "cores": 0.5, "memory": 128}]}


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    if shutil.which("nsenter") is None:
        pytest.skip("needs nsenter")
    base = tmp_path_factory.mktemp("aggregate")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("SLICELAB_SWEEP_INTERVAL", "1")  # the server started by the testbed
        made = open_world(base, subnet=SUBNET, hosts=2, progress=lambda _: None)
    left: list[str] = []
    try:
        yield made
    finally:
        left = close_world(made)
    assert not left, f"left behind: {left}"


def _states(world: World, ref: str) -> list[str | None]:
    return [s.state for s in world.member.slice_status(ref).slivers]


def _wait(what: str, check: Any, *, until: float) -> float:
    """Poll ``check`` until it is true; the monotonic time it became so."""
    while not check():
        if time.monotonic() > until:
            raise AssertionError(f"{what}: not by the deadline")
        time.sleep(0.25)
    return time.monotonic()


def test_an_advance_reservation_starts_and_ends_by_itself(world: World) -> None:
    ref = "demo/ahead"
    world.member.create_slice(ref, days=1)
    leases = Leases(world.member)
    start = datetime.now(UTC) + AHEAD
    lease = leases.allocate(ref, topology=PAIR, start=start, duration=LEASE).lease
    leases.provision(ref)
    begins = time.monotonic() + (lease.start - datetime.now(UTC)).total_seconds()
    ends = begins + (lease.end - lease.start).total_seconds()
    assert "ready" not in _states(world, ref)
    assert not any(host_owners(world.base_dir).values())  # nothing built ahead of time
    ready = _wait("slivers ready after the start", lambda: _states(world, ref) == ["ready"] * 2,
                  until=begins + 60)
    assert ready >= begins - 1.5  # not before the lease starts (a second of sweep slack)
    world.remember()
    assert any(host_owners(world.base_dir).values())
    _wait("slivers gone after the end", lambda: not world.member.slice_status(ref).slivers,
          until=ends + 30)
    assert time.monotonic() >= ends - 1.5
    wait_released(world.base_dir, timeout=60)
    assert [x.state for x in leases.leases(ref)] in ([], ["ended"])


def _find_slot(world: World, topology: dict[str, Any], duration: str) -> dict[str, Any]:
    path = world.base_dir / "slot.json"
    path.write_text(json.dumps(topology))
    env = {**os.environ, "SLICELAB_URL": world.member.url, "SLICELAB_TOKEN": world.member_token,
           "XDG_CONFIG_HOME": str(world.base_dir / "config")}
    done = subprocess.run([*processes.slicelab_argv(), "resources", "find-slot", "--topology",
                           str(path), "--duration", duration, "--json"], capture_output=True,
                          text=True, env=env, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    found: dict[str, Any] = json.loads(done.stdout)
    return found


def test_find_slot_finds_the_first_free_window_around_a_booking(world: World) -> None:
    cores = min(int(n.inventory["cores"]) for n in world.admin.nodes())
    whole = {"nodes": [{"name": f"w{i}", "cores": cores, "memory": 128} for i in (1, 2)]}
    ref = "demo/later"
    world.member.create_slice(ref, days=1)
    start = datetime.now(UTC) + timedelta(hours=2)
    booked = Leases(world.member).allocate(ref, topology=whole, start=start,
                                           duration="1h").lease
    one = {"nodes": [{"name": "x", "cores": cores, "memory": 128}]}
    short = _find_slot(world, one, "30m")  # fits before the booking
    assert datetime.fromisoformat(short["start"]) < booked.start
    long = _find_slot(world, one, "3h")  # overlaps it wherever it starts before its end
    assert datetime.fromisoformat(long["start"]) == booked.end
    assert long["hosts"]["x"] in {"host1", "host2"}
    Leases(world.member).delete(ref)
