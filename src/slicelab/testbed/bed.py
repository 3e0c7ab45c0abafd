"""The local testbed: N physical-node hosts as network namespaces on one private bridge.

``testbed_up`` makes a bridge with the subnet's first address, one namespace per host with
a veth into the bridge (``eth0``, the subnet's next addresses), starts a slicelab server on
the bridge address unless one is given, enrolls one real ``slicelab agent`` per host (run
inside its namespace with ``nsenter``, its own state dir and kernel-object prefix) and
waits until every agent is enrolled. The subnet is not routed anywhere: nothing leaves
the machine. Every object is written to ``<base_dir>/testbed.json`` before it is made, and
``testbed_down`` removes exactly those, by id, newest first, even after a crash.
"""

from __future__ import annotations

import hashlib
import ipaddress
import shutil
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from slicelab.agent.config import config_from, save_config
from slicelab.agent.net.netlink import Netlink
from slicelab.agent.state import atomic_write
from slicelab.domain.errors import Conflict, InvalidInput, Unavailable
from slicelab.testbed import processes
from slicelab.testbed.record import DEFAULT_BASE, Item, TestbedRecord

__all__ = ["DEFAULT_BASE", "HostInfo", "testbed_down", "testbed_status", "testbed_up"]

_STATE = "testbed.json"
_PORT = 8470
_SERVER_GRACE = 0.5  # seconds a stopping server may finish requests; its agents are gone
_AGENT_GRACE = 3.0


@dataclass(frozen=True)
class HostInfo:
    name: str
    netns: str
    address: str
    state_dir: Path
    pid: int | None
    running: bool
    enrolled: bool


def _tag(base_dir: Path) -> str:
    return hashlib.sha256(str(base_dir.resolve()).encode()).hexdigest()[:2]


def _addresses(subnet: str, nodes: int) -> list[str]:
    network = ipaddress.IPv4Network(subnet)
    hosts = [str(h) for h in network.hosts()]
    if not 1 <= nodes <= min(len(hosts) - 1, 99):
        raise InvalidInput(f"nodes must be in 1..{min(len(hosts) - 1, 99)}", field="nodes")
    return hosts[: nodes + 1]


def _make_bridge(record: TestbedRecord, net: Netlink, name: str, cidr: str) -> int:
    with record.step("bridge", name) as item:
        item.data["ifindex"] = net.add_bridge(name)
        net.add_address(item.data["ifindex"], cidr)
    return int(item.data["ifindex"])


def _make_host(record: TestbedRecord, net: Netlink, *, index: int, bridge: int,
               cidr: str) -> str:
    tag = record.info["tag"]
    ns = f"slicelab-tb{tag}-h{index}"
    with record.step("netns", ns):
        net.create_netns(ns)
    host_end = f"tb{tag}h{index}"
    with record.step("veth", host_end, ns=ns) as item:
        item.data["ifindex"], inner = net.add_veth(host_end, peer=f"tb{tag}p{index}", ns=ns)
    net.configure(item.data["ifindex"], master=bridge, state="up")
    net.configure(inner, ns=ns, ifname="eth0", state="up")
    net.add_address(inner, cidr, ns=ns)
    return ns


def _wait_http(url: str, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.1)
    raise Unavailable(f"the slicelab server at {url} did not answer in {timeout} s")


def _start_server(record: TestbedRecord, base_dir: Path, address: str) -> tuple[str, str]:
    from slicelab.bootstrap import init_admin

    db = base_dir / "server" / "slicelab.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    argv = [*processes.slicelab_argv(), "server", "--host", address, "--port", str(_PORT),
            "--db", str(db)]
    with record.step("server", "slicelab server") as item:
        item.data["pid"], item.data["start"] = processes.spawn(
            argv, log=base_dir / "server" / "server.log")
    url = f"http://{address}:{_PORT}"
    _wait_http(url, timeout=60.0)
    return url, init_admin(db=str(db), name="admin", new_token=True)


def _api(url: str, token: str, method: str, path: str, body: Any) -> httpx.Response:
    return httpx.request(method, f"{url}/api/v1{path}", json=body, timeout=30.0,
                         headers={"Authorization": f"Bearer {token}"})


def _enrollment(url: str, token: str, *, site: str, name: str) -> str:
    created = _api(url, token, "POST", "/sites", {"name": site})
    if created.status_code not in (201, 409):
        raise Unavailable(f"cannot create site {site}: {created.text}")
    response = _api(url, token, "POST", f"/sites/{site}/enrollments", {"name": name})
    if response.status_code != 201:
        raise Unavailable(f"cannot make an enrollment token for {name}: {response.text}")
    return str(response.json()["token"])


def _host_dir(base_dir: Path, index: int) -> Path:
    return base_dir / "hosts" / f"host{index}"


def _start_agent(record: TestbedRecord, base_dir: Path, *, index: int, ns: str,
                 server: str, token: str, address: str) -> None:
    home = _host_dir(base_dir, index)
    config = config_from(server=server, state_dir=str(home / "state"), name=f"host{index}",
                         prefix=f"t{record.info['tag']}{index}", host_ip=address)
    save_config(config, home / "agent.json")
    atomic_write(home / "enroll.token", token.encode(), mode=0o600)
    argv = ["nsenter", f"--net=/var/run/netns/{ns}", "--", *processes.agent_argv(),
            "run", "--config", str(home / "agent.json"),
            "--enroll-token-file", str(home / "enroll.token")]
    with record.step("agent", f"host{index}", ns=ns, home=str(home),
                     prefix=config.prefix) as item:
        item.data["pid"], item.data["start"] = processes.spawn(argv, log=home / "agent.log")


def _wait_enrolled(base_dir: Path, record: TestbedRecord, *, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    for item in record.of_kind("agent"):
        node_file = Path(item.data["home"]) / "state" / "node.json"
        while not node_file.exists():
            if not processes.alive(item.data["pid"], item.data["start"]):
                raise Unavailable(f"the agent of {item.name} exited; see "
                                  f"{item.data['home']}/agent.log")
            if time.monotonic() > deadline:
                raise Unavailable(f"the agent of {item.name} did not enroll in {timeout} s")
            time.sleep(0.05)


def testbed_up(nodes: int = 2, *, server_url: str | None = None, admin_token: str | None = None,
               base_dir: Path = DEFAULT_BASE, subnet: str = "172.31.250.0/24",
               site: str = "local", timeout: float = 60.0) -> TestbedRecord:
    """Make the testbed; on any failure, remove what was made and raise."""
    addresses = _addresses(subnet, nodes)
    if server_url is not None and not admin_token:
        raise InvalidInput("an admin token is needed with a server URL", field="admin_token")
    if TestbedRecord.load(base_dir / _STATE) is not None:
        raise Conflict(f"a testbed is up at {base_dir}; run 'slicelab testbed down' first")
    prefixlen = ipaddress.IPv4Network(subnet).prefixlen
    for old in ("server", "hosts"):
        shutil.rmtree(base_dir / old, ignore_errors=True)
    record = TestbedRecord(base_dir / _STATE, info={"tag": _tag(base_dir), "subnet": subnet,
                                                    "site": site, "nodes": nodes})
    try:
        _bring_up(record, base_dir, addresses, prefixlen, server_url, admin_token, site)
        _wait_enrolled(base_dir, record, timeout=timeout)
    except BaseException:
        testbed_down(base_dir=base_dir)
        raise
    return record


def _bring_up(record: TestbedRecord, base_dir: Path, addresses: list[str], prefixlen: int,
              server_url: str | None, admin_token: str | None, site: str) -> None:
    net = Netlink()
    try:
        bridge = _make_bridge(record, net, f"tb{record.info['tag']}br",
                              f"{addresses[0]}/{prefixlen}")
        spaces = [_make_host(record, net, index=i, bridge=bridge,
                             cidr=f"{addresses[i]}/{prefixlen}")
                  for i in range(1, len(addresses))]
    finally:
        net.close()
    if server_url is None:
        server_url, admin_token = _start_server(record, base_dir, addresses[0])
    assert admin_token is not None
    record.info.update(server=server_url, admin_token=admin_token)
    record.save()
    for i, ns in enumerate(spaces, start=1):
        token = _enrollment(server_url, admin_token, site=site, name=f"host{i}")
        _start_agent(record, base_dir, index=i, ns=ns, server=server_url, token=token,
                     address=addresses[i])


def _remove_agent(item: Item) -> None:
    """Stop the agent, then remove what it made (agents are removed side by side).

    An agent stops after its current step; one still busy after :data:`_AGENT_GRACE` is
    killed: its ledger survives ``kill -9`` and the cleanup removes what it made."""
    if "pid" in item.data:
        processes.stop(item.data["pid"], item.data.get("start"), timeout=_AGENT_GRACE)
    _cleanup_agent(item)


def _remove(item: Item, net: Netlink) -> None:
    if item.kind == "server" and "pid" in item.data:
        processes.stop(item.data["pid"], item.data.get("start"), again_after=_SERVER_GRACE)
    elif item.kind in ("bridge", "veth"):
        net.delete_link(item.data.get("ifindex"), item.name)
    elif item.kind == "netns":
        net.delete_netns(item.name)


def _cleanup_agent(item: Item) -> None:
    """Everything the agent made (slivers, links, cgroups, mounts), inside its namespace."""
    import subprocess

    home = Path(item.data["home"])
    if not (home / "agent.json").exists() or not (home / "state").exists():
        return
    argv = ["nsenter", f"--net=/var/run/netns/{item.data['ns']}", "--",
            *processes.agent_argv(), "cleanup", "--config", str(home / "agent.json")]
    done = subprocess.run(argv, capture_output=True, text=True, check=False, timeout=120)
    if done.returncode != 0:
        raise Unavailable(f"cleanup of {item.name} failed: {done.stderr.strip()}")


def testbed_down(*, base_dir: Path = DEFAULT_BASE) -> int:
    """Remove every recorded object, newest first; return how many were removed."""
    record = TestbedRecord.load(base_dir / _STATE)
    if record is None:
        return 0
    agents = record.of_kind("agent")
    removed = len(record.items)
    with ThreadPoolExecutor(max_workers=max(1, len(agents))) as pool:
        for item, _ in zip(agents, pool.map(_remove_agent, agents), strict=True):
            record.forget(item)
    net = Netlink()
    try:
        for item in _down_order(record.items):
            _remove(item, net)
            record.forget(item)
    finally:
        net.close()
    (base_dir / _STATE).unlink(missing_ok=True)
    return removed


def _down_order(items: list[Item]) -> list[Item]:
    """The server first, then kernel objects newest first."""
    servers = [i for i in items if i.kind == "server"]
    return servers + [i for i in reversed(items) if i.kind != "server"]


def testbed_status(*, base_dir: Path = DEFAULT_BASE) -> dict[str, Any] | None:
    """The testbed's server, subnet and hosts (with whether each agent runs), or None."""
    record = TestbedRecord.load(base_dir / _STATE)
    if record is None:
        return None
    addresses = _addresses(record.info["subnet"], int(record.info["nodes"]))
    hosts = []
    for item in record.of_kind("agent"):
        index = int(item.name.removeprefix("host"))
        home = Path(item.data["home"])
        hosts.append(HostInfo(item.name, item.data["ns"], addresses[index], home / "state",
                              item.data.get("pid"),
                              processes.alive(item.data.get("pid", 0), item.data.get("start")),
                              (home / "state" / "node.json").exists()))
    servers = record.of_kind("server")
    server_running = bool(servers) and processes.alive(servers[0].data.get("pid", 0),
                                                       servers[0].data.get("start"))
    return {"server": record.info.get("server"), "subnet": record.info["subnet"],
            "local_server": bool(servers), "server_running": server_running,
            "hosts": hosts, "base_dir": str(base_dir)}
