"""``slicelab server`` answers every request on a kept-alive connection without waiting for
a delayed ACK (accepted sockets have TCP_NODELAY): the second request on one connection is
as quick as the first, not ~40 ms late."""

from __future__ import annotations

import http.client
import os
import select
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from slicelab.cli.server import listen

SCRIPT = Path(sys.executable).parent / "slicelab"
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="slicelab script not installed")


def test_listening_socket_gives_accepted_connections_nodelay() -> None:
    import socket

    server = listen("127.0.0.1", 0)
    try:
        with socket.create_connection(server.getsockname()[:2], timeout=5):
            accepted, _ = server.accept()
            with accepted:
                assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
                assert accepted.proto == socket.IPPROTO_TCP  # asyncio sets it again too
    finally:
        server.close()


@pytest.fixture
def server_url(tmp_path: Path) -> Iterator[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLICELAB_")}
    env = {**clean, "XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path)}
    with (tmp_path / "server.log").open("w") as log:
        proc = subprocess.Popen(
            [str(SCRIPT), "server", "--port", "0", "--db", str(tmp_path / "slicelab.db")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        assert "listening on http://" in line, (tmp_path / "server.log").read_text()
        yield line.split()[4]
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def _two_on_one_connection(host: str, port: int) -> tuple[float, float]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    times = []
    try:
        for _ in range(2):
            start = time.perf_counter()
            conn.request("GET", "/api/v1/health")
            response = conn.getresponse()
            assert response.status == 200 and response.read()
            assert not response.will_close
            times.append(time.perf_counter() - start)
    finally:
        conn.close()
    return times[0], times[1]


def test_second_request_on_a_kept_alive_connection_has_no_delayed_ack(server_url: str) -> None:
    host, port = server_url.removeprefix("http://").rsplit(":", 1)
    _two_on_one_connection(host, int(port))  # warm up: imports, first database use
    rounds = [_two_on_one_connection(host, int(port)) for _ in range(7)]
    firsts, seconds = zip(*rounds, strict=True)
    # A delayed ACK makes every second request take 40 ms or more; medians ride out load.
    assert statistics.median(firsts) < 0.03, rounds
    assert statistics.median(seconds) < 0.03, rounds
