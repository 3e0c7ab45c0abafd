"""Inventory and the agent's config file."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from slicelab.agent import inventory
from slicelab.agent.config import AgentConfig, Device, config_from, load_config, save_config
from slicelab.domain.errors import InvalidInput


def test_a_toml_config_loads_with_devices(tmp_path: Path) -> None:
    path = tmp_path / "agent.toml"
    path.write_text('server = "http://172.31.250.1:8470"\nstate_dir = "/var/lib/x"\n'
                    'port_base = 21000\n'
                    'devices = [{name = "wifi0", kind = "exclusive"}, {name = "gps"}]\n')
    config = load_config(path, name="host9")
    assert config.state_dir == Path("/var/lib/x") and config.port_base == 21000
    assert config.devices == (Device("wifi0", "exclusive"), Device("gps", "shared"))
    assert config.name == "host9"


def test_a_json_config_round_trips(tmp_path: Path) -> None:
    config = config_from(server="http://a:1", state_dir="/s", devices=[{"name": "gps"}],
                         bandwidth_cap_mbps=10.0)
    save_config(config, tmp_path / "agent.json")
    assert load_config(tmp_path / "agent.json") == config


@pytest.mark.parametrize(("values", "field"), [
    ({"server": "ftp://x"}, "server"),
    ({"control_subnet": "10.0.0.1/33"}, "control_subnet"),
    ({"port_base": 80}, "port_base"),
    ({"surprise": 1}, "surprise"),
    ({"devices": [{"name": "x", "kind": "borrowed"}]}, "devices.kind"),
])
def test_bad_config_values_name_their_field(tmp_path: Path, values: dict[str, object],
                                            field: str) -> None:
    path = tmp_path / "agent.json"
    path.write_text(json.dumps({"server": "http://a:1", "state_dir": "/s", **values}))
    with pytest.raises(InvalidInput) as caught:
        load_config(path)
    assert caught.value.field == field


def test_inventory_reads_this_machine(tmp_path: Path) -> None:
    config = AgentConfig(server="http://127.0.0.1:8470", state_dir=tmp_path,
                         devices=(Device("gps"),), host_ip="172.31.250.9")
    found = inventory.collect(config)
    assert found["cores"] >= 1 and found["memory_mib"] > 16
    assert found["disk_gib"] >= 0
    assert found["devices"] == [{"name": "gps", "kind": "shared"}]
    assert found["host_ip"] == "172.31.250.9"
    assert all(i["name"] != "lo" and "mac" in i for i in found["interfaces"])


def test_memory_comes_from_meminfo(tmp_path: Path) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       2097152 kB\nMemFree: 1 kB\n")
    assert inventory.memory_mib(meminfo=meminfo) == 2048


def test_host_ip_prefers_a_non_loopback_address() -> None:
    known = [{"name": "eth0", "mac": "02:00:00:00:00:01", "ipv4": "172.31.250.5/24"}]
    assert inventory.host_ip("http://127.0.0.1:8470", known=known) == "172.31.250.5"
    assert inventory.host_ip("http://x", given="10.1.1.1") == "10.1.1.1"
