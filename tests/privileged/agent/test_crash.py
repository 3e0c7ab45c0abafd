"""A SIGKILL at any step of ensure leaves nothing that cleanup_all cannot remove."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from slicelab.agent.ledger import Ledger

pytestmark = pytest.mark.privileged

Child = Callable[..., subprocess.CompletedProcess[str]]


def _job(tmp_path: Path, image: Path, kill_at: dict[str, object] | None, *,
         pair: bool = False) -> dict[str, object]:
    slivers = [["sliver", {"id": f"k{i}", "ip": f"10.54.0.{i}/24", "link": "kl",
                           "port": 23000 + 10 * i}] for i in (1, 2)]
    members = ["k1", "k2"] if pair else []  # two members: a veth pair, no bridge
    return {"state_dir": str(tmp_path / "state"), "prefix": "zk", "subnet": "10.214.0.0/24",
            "host_ip": "10.214.0.1", "image": str(image), "kill_at": kill_at,
            "actions": [["link", {"link_id": "kl", "vni": 400, "capacity_mbps": 20,
                                  "remotes": [], "members": members}], *slivers]}


@pytest.mark.parametrize(("call", "n"), [("begin", 1), ("begin", 4), ("finish", 9),
                                         ("begin", 14), ("finish", 17), ("begin", 21),
                                         ("finish", 25), ("begin", 30)])
def test_kill_mid_ensure_then_cleanup_leaves_nothing(children: Child, tmp_path: Path,
                                                     image: Path, call: str, n: int) -> None:
    job = _job(tmp_path, image, {"call": call, "n": n})
    done = children(job, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    assert ledger.records(), "the kill came after the last step"
    ledger.close()
    children({**job, "kill_at": None, "actions": [["cleanup"]]})
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    assert ledger.records() == [] and ledger.owners() == []
    ledger.close()
    # the `children` fixture compares netns, links, cgroups, mounts and nft tables


def test_ensure_after_a_crash_converges(children: Child, tmp_path: Path, image: Path) -> None:
    job = _job(tmp_path, image, {"call": "finish", "n": 17})
    children(job, check=False)
    job = {**job, "kill_at": None}
    done = children({**job, "actions": [*job["actions"],  # type: ignore[list-item]
                                        ["exec", "k1", ["ping", "-c", "1", "-W", "2",
                                                        "10.54.0.2"]]]})
    code, out, _ = json.loads(done.stdout.splitlines()[-1])
    assert code == 0, out


# begin 30 / finish 21: the pair's intent, and the pair made but not yet marked done
@pytest.mark.parametrize(("call", "n"), [("begin", 1), ("finish", 1), ("begin", 21),
                                         ("begin", 30), ("finish", 21), ("finish", 23),
                                         ("finish", 24)])
def test_kill_mid_pair_link_then_cleanup_leaves_nothing(children: Child, tmp_path: Path,
                                                        image: Path, call: str, n: int) -> None:
    job = _job(tmp_path, image, {"call": call, "n": n}, pair=True)
    done = children(job, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr
    children({**job, "kill_at": None, "actions": [["cleanup"]]})
    ledger = Ledger(tmp_path / "state" / "ledger.sqlite3")
    assert ledger.records() == [] and ledger.owners() == []
    ledger.close()


def test_pair_link_after_a_crash_converges(children: Child, tmp_path: Path,
                                           image: Path) -> None:
    job = _job(tmp_path, image, {"call": "finish", "n": 21}, pair=True)
    children(job, check=False)
    job = {**job, "kill_at": None}
    done = children({**job, "actions": [*job["actions"],  # type: ignore[list-item]
                                        ["exec", "k1", ["ping", "-c", "1", "-W", "2",
                                                        "10.54.0.2"]]]})
    code, out, _ = json.loads(done.stdout.splitlines()[-1])
    assert code == 0, out
