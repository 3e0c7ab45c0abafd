"""The installed ``slicelab`` console script, as a user runs it, against ``slicelab server``.

Both run as subprocesses with a temporary database and temporary XDG directories; the
server listens on a free port of 127.0.0.1 and is stopped (by its process id) afterwards.
"""

from __future__ import annotations

import json
import os
import select
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

SCRIPT = Path(sys.executable).parent / "slicelab"
pytestmark = pytest.mark.skipif(not SCRIPT.exists(), reason="slicelab script not installed")


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli-script")


@pytest.fixture(scope="module")
def env(home: Path) -> dict[str, str]:
    tmp_path = home
    clean = {k: v for k, v in os.environ.items() if not k.startswith("SLICELAB_")}
    return {**clean, "XDG_CONFIG_HOME": str(tmp_path / "config"),
            "XDG_DATA_HOME": str(tmp_path / "data"), "HOME": str(tmp_path / "home")}


def slicelab(*args: str, env: dict[str, str], stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=60, check=False)


def _first_line(proc: subprocess.Popen[str], *, timeout: float) -> str:
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    if not ready:
        raise TimeoutError("slicelab server printed nothing")
    return proc.stdout.readline()


def _wait_healthy(url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"{url} did not become healthy")
        time.sleep(0.05)


@pytest.fixture(scope="module")
def server(home: Path, env: dict[str, str]) -> Iterator[tuple[str, Path]]:
    tmp_path = home
    db = tmp_path / "slicelab.db"
    log = tmp_path / "server.log"
    with log.open("w") as err:
        proc = subprocess.Popen([str(SCRIPT), "server", "--port", "0", "--db", str(db)],
                                env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        line = _first_line(proc, timeout=60)
        assert line.startswith("slicelab server listening on http://127.0.0.1:"), log.read_text()
        url = line.split()[4]
        _wait_healthy(url, timeout=30)
        yield url, db
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def test_console_script_end_to_end(server: tuple[str, Path], env: dict[str, str],
                                   home: Path) -> None:
    url, db = server
    init = slicelab("admin", "init", "--db", str(db), "--url", url, env=env)
    assert init.returncode == 0, init.stderr
    login_line = next(ln for ln in init.stdout.splitlines() if ln.startswith("slicelab login"))
    args = login_line.split()[1:]
    assert args[:3] == ["login", "--url", url]

    done = slicelab(*args, env=env)
    assert done.returncode == 0, done.stderr
    config = home / "config" / "slicelab" / "config.json"
    assert stat.S_IMODE(config.stat().st_mode) == 0o600

    me = slicelab("whoami", "--json", env=env)
    assert me.returncode == 0 and json.loads(me.stdout)["name"] == "admin"
    listed = slicelab("slice", "list", "--json", env=env)
    assert listed.returncode == 0 and json.loads(listed.stdout) == []
    assert listed.stderr == ""


def test_console_script_errors(server: tuple[str, Path], env: dict[str, str]) -> None:
    url, _ = server
    bad = slicelab("login", "--url", url, "--token", "slt_not-a-token", env=env)
    assert bad.returncode == 1
    assert bad.stderr.startswith("error: ") and bad.stderr.count("\n") == 1
    assert "Traceback" not in bad.stderr

    usage = slicelab("slice", "renew", "demo/first", env=env)
    assert usage.returncode == 2 and usage.stderr.count("\n") == 1

    dead = slicelab("whoami", env={**env, "SLICELAB_URL": "http://127.0.0.1:9",
                                   "SLICELAB_TOKEN": "x"})
    assert dead.returncode == 1
    assert dead.stderr.startswith("error: cannot reach slicelab at http://127.0.0.1:9")


def test_server_refuses_a_port_in_use(server: tuple[str, Path], env: dict[str, str],
                                      tmp_path: Path) -> None:
    port = server[0].rsplit(":", 1)[1]
    second = slicelab("server", "--port", port, "--db", str(tmp_path / "other.db"), env=env)
    assert second.returncode == 1
    assert second.stderr == f"error: cannot listen on 127.0.0.1:{port}: Address already in use\n"
