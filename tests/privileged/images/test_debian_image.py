"""``slicelab image build debian`` as a new user runs it, on a real one-host testbed.

Through the command line: build the image at the testbed's server (debootstrap, minbase,
from ``$SLICELAB_DEBIAN_MIRROR`` or deb.debian.org), apply a slice of one sliver booting it,
``slicelab exec`` shows Debian's /etc/os-release, ``slicelab ssh`` logs in through the
sliver's dropbear; then the slice is deleted and the testbed torn down, leaving nothing.

Needs root, nsenter, debootstrap, ssh and the Debian mirror. Measured here (2 cores shared
with other runs): debootstrap alone ~30 s (load average 0.2); the whole build with chunking
and registering (the image is ~80 MB) 60-100 s, this test 135-160 s (load average 10-90).
That is under the 3 minute budget, so it runs in CI with the other privileged tests and
nothing is cached between builds.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Iterator

import pytest
import yaml

from slicelab.images.rootfs import DEBIAN_MIRROR_ENV, debian_mirror
from slicelab.testbed import processes
from slicelab.testbed.demo import World, close_world, open_world, wait_ready, wait_released

pytestmark = [
    pytest.mark.privileged,
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root"),
]

SUBNET = "172.31.237.0/24"
SLICE = "demo/deb"
TOOLS = ("nsenter", "debootstrap", "ssh")


@pytest.fixture(scope="module")
def debian_world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}")
    base = tmp_path_factory.mktemp("debian")
    made = open_world(base, subnet=SUBNET, hosts=1, progress=lambda _: None)
    left: list[str] = []
    try:
        yield made
    finally:
        left = close_world(made)
    assert not left, f"left behind: {left}"


def _cli(world: World, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """``slicelab ARGS`` as the member, with a config of its own (not the caller's)."""
    env = {
        **os.environ,
        "SLICELAB_URL": str(world.record.info["server"]),
        "SLICELAB_TOKEN": world.member_token,
        "XDG_CONFIG_HOME": str(world.base_dir / "config"),
    }
    argv = [*processes.slicelab_argv(), *args]
    done = subprocess.run(
        argv, capture_output=True, text=True, env=env, check=False, timeout=timeout
    )
    assert done.returncode == 0, f"slicelab {' '.join(args)}: {done.stderr.strip()[-800:]}"
    return done


def test_the_mirror_defaults_to_deb_debian_org_and_may_be_set() -> None:
    assert debian_mirror({}) == "http://deb.debian.org/debian"
    assert debian_mirror({DEBIAN_MIRROR_ENV: "http://mirror.example/debian/"}) == (
        "http://mirror.example/debian"
    )


def test_debian_builds_boots_and_answers_ssh(debian_world: World) -> None:
    world = debian_world
    began = time.monotonic()
    built = _cli(world, "image", "build", "debian", timeout=900)
    seconds = time.monotonic() - began
    print(f"\nslicelab image build debian: {seconds:.0f} s; {built.stdout.strip()}")
    assert "image debian version" in built.stdout
    topology = world.base_dir / "debian.yaml"
    topology.write_text(
        yaml.safe_dump({"nodes": [{"name": "d1", "image": "debian", "cores": 0.5, "memory": 256}]})
    )
    _cli(world, "slice", "create", SLICE, "--days", "1")
    _cli(world, "slice", "apply", SLICE, str(topology))
    wait_ready(world.member, SLICE, timeout=180)
    world.remember()
    release = _cli(world, "exec", SLICE, "d1", "--", "cat", "/etc/os-release").stdout
    assert "ID=debian" in release and "VERSION_CODENAME=bookworm" in release
    over_ssh = _cli(
        world,
        "ssh",
        SLICE,
        "d1",
        "-i",
        str(world.key_path),
        "-o",
        "StrictHostKeyChecking=no",
        "-o",
        "UserKnownHostsFile=/dev/null",
        "-o",
        "BatchMode=yes",
        "-o",
        "ConnectTimeout=10",
        "--",
        "head -1 /etc/os-release; basename $(readlink /proc/1/exe); id -u",
    ).stdout
    assert over_ssh.split() == [
        'PRETTY_NAME="Debian',
        "GNU/Linux",
        "12",
        '(bookworm)"',
        "busybox",
        "0",
    ]
    _cli(world, "slice", "delete", SLICE, "--yes")
    wait_released(world.base_dir)
