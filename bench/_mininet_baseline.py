"""Mininet baseline for bench/topology.py: build and tear down N hosts in shaped pairs.

Run with Debian's ``/usr/bin/python3`` (the ``mininet`` package installs there):

    /usr/bin/python3 bench/_mininet_baseline.py --hosts 10 100 --reps 3 --bw 100

Topology (the same as slicelab's side): ``N/2`` pairs; pair ``i`` is two hosts on a Linux
bridge (``LinuxBridge``, no controller, no Open vSwitch), each joined to it by a ``TCLink``
shaped with tbf at ``--bw`` Mbit/s (both ends of each link are shaped, as in slicelab).
Build = ``Mininet(...)`` plus ``net.start()``; teardown = ``net.stop()``. Mininet's own
name-pattern cleanup (``mn -c``) is never called. One JSON object per line on stdout:
``{"hosts": N, "rep": r, "build_s": ..., "teardown_s": ...}``.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from types import FrameType

from mininet.link import TCLink
from mininet.log import setLogLevel
from mininet.net import Mininet
from mininet.nodelib import LinuxBridge
from mininet.topo import Topo

__all__ = ["PairsTopo", "main", "measure"]


class PairsTopo(Topo):  # type: ignore[misc]
    """``hosts/2`` pairs of hosts, each pair on its own bridge, every link shaped."""

    def build(self, *, hosts: int = 2, bw: float = 100.0) -> None:  # type: ignore[override]
        for pair in range(hosts // 2):
            bridge = self.addSwitch(f"s{pair + 1}")
            for side in (1, 2):
                host = self.addHost(f"h{2 * pair + side}")
                self.addLink(host, bridge, bw=bw, use_tbf=True)


def _raise_interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def measure(*, hosts: int, bw: float) -> tuple[float, float]:
    """Seconds to build and to tear down one network of ``hosts`` hosts."""
    net: Mininet | None = None
    started = time.perf_counter()
    try:
        net = Mininet(topo=PairsTopo(hosts=hosts, bw=bw), switch=LinuxBridge, link=TCLink,
                      controller=None, build=False, autoSetMacs=True)
        net.build()
        net.start()
        built = time.perf_counter()
        net.stop()
        net = None
        return built - started, time.perf_counter() - built
    finally:
        if net is not None:
            net.stop()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--hosts", type=int, nargs="+", default=[10])
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--bw", type=float, default=100.0)
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    setLogLevel("error")
    for hosts in args.hosts:
        for rep in range(args.reps):
            build, teardown = measure(hosts=hosts, bw=args.bw)
            row = {"hosts": hosts, "rep": rep, "build_s": build, "teardown_s": teardown}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
