"""Runs a NodeRuntime in a child process (optionally in another netns, or killed mid-way).

argv[1] is JSON: state_dir, prefix, subnet, host_ip, image, actions (a list of
["link", {LinkSpec fields}], ["sliver", {id, ip, link, port}], ["exec", id, argv],
["cleanup"]), kill_at ({"call": "begin"|"finish", "n": k}: SIGKILL itself at that call).
Prints one JSON line per exec result.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path
from typing import Any

from slicelab.agent.ledger import Ledger
from slicelab.agent.runtime.node import NodeRuntime
from slicelab.agent.spec import InterfaceSpec, LinkSpec, PortRange, SliverSpec


def _arm(kill_at: dict[str, Any]) -> None:
    original = getattr(Ledger, kill_at["call"])
    calls = {"n": 0}

    def wrapped(self: Ledger, *args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        if kill_at["call"] == "finish" and calls["n"] == kill_at["n"]:
            os.kill(os.getpid(), signal.SIGKILL)  # made, not yet marked done
        result = original(self, *args, **kwargs)
        if calls["n"] == kill_at["n"]:
            os.kill(os.getpid(), signal.SIGKILL)  # intent durable, nothing made yet
        return result

    setattr(Ledger, kill_at["call"], wrapped)


def _sliver(image: str, item: dict[str, Any]) -> SliverSpec:
    iface = InterfaceSpec(link_id=item["link"], ifname="exp0", ipv4=item["ip"])
    return SliverSpec(sliver_id=item["id"], hostname=f"{item['id']}.exp.proj.test", cores=0.5,
                      memory_mib=64, pids_max=64, image_dir=Path(image),
                      ports=PortRange(item["port"], 4), interfaces=(iface,))


def main() -> None:
    job = json.loads(sys.argv[1])
    if job.get("kill_at"):
        _arm(job["kill_at"])
    runtime = NodeRuntime(state_dir=Path(job["state_dir"]), prefix=job["prefix"],
                          control_subnet=job["subnet"], host_ip=job["host_ip"])
    for action, *args in job["actions"]:
        if action == "link":
            runtime.ensure_link(LinkSpec(**{**args[0], "remotes": tuple(args[0]["remotes"]),
                                            "members": tuple(args[0].get("members", ()))}))
        elif action == "sliver":
            runtime.ensure_sliver(_sliver(job["image"], args[0]))
        elif action == "exec":
            print(json.dumps(runtime.exec(args[0], args[1], timeout=15)), flush=True)
        elif action == "cleanup":
            runtime.cleanup_all()
    runtime.close()


if __name__ == "__main__":
    main()
