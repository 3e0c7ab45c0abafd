"""The node agent's configuration file (TOML or JSON, chosen by the file's suffix).

Example ``/etc/slicelab/agent.toml``::

    server = "https://am.example.org:8470"
    state_dir = "/var/lib/slicelab/agent"
    name = "host1"
    prefix = "sl"
    control_subnet = "10.200.0.0/24"
    port_base = 20000
    bandwidth_cap_mbps = 100
    image_cache_mib = 20480     # the image cache's quota ($SLICELAB_IMAGE_CACHE_MIB wins)
    devices = [{name = "wifi0", kind = "exclusive"}, {name = "gps", kind = "shared"}]
"""

from __future__ import annotations

import ipaddress
import json
import tomllib
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from slicelab.domain.errors import InvalidInput

__all__ = ["AgentConfig", "Device", "config_from", "load_config", "save_config"]

DeviceKind = Literal["exclusive", "shared"]


@dataclass(frozen=True)
class Device:
    """A device on the node that slivers may be given: ``exclusive`` or ``shared``."""

    name: str
    kind: DeviceKind = "shared"

    def __post_init__(self) -> None:
        if self.kind not in ("exclusive", "shared"):
            raise InvalidInput(f"device kind {self.kind!r} is not exclusive or shared",
                               field="devices.kind")
        if not self.name:
            raise InvalidInput("device name is empty", field="devices.name")


@dataclass(frozen=True)
class AgentConfig:
    """Everything the agent needs to know before it talks to its aggregate."""

    server: str
    state_dir: Path
    name: str | None = None
    prefix: str = "sl"
    control_subnet: str = "10.200.0.0/24"
    port_base: int = 20000
    bandwidth_cap_mbps: float | None = None
    image_cache_mib: float | None = None
    host_ip: str | None = None
    devices: tuple[Device, ...] = field(default=())
    poll_wait: int = 25
    report_interval: float = 30.0
    metadata_port: int = 80

    def __post_init__(self) -> None:
        parts = urlsplit(self.server)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise InvalidInput(f"server {self.server!r} is not an http(s) URL", field="server")
        try:
            ipaddress.IPv4Network(self.control_subnet)
        except ValueError as exc:
            raise InvalidInput(f"control_subnet: {exc}", field="control_subnet") from exc
        if not 1024 <= self.port_base <= 65000:
            raise InvalidInput("port_base must be in 1024..65000", field="port_base")
        if not 0 <= self.metadata_port <= 65535:
            raise InvalidInput("metadata_port must be in 0..65535 (0: none)",
                               field="metadata_port")
        if not 0 <= self.poll_wait <= 60:
            raise InvalidInput("poll_wait must be in 0..60", field="poll_wait")
        if self.bandwidth_cap_mbps is not None and self.bandwidth_cap_mbps <= 0:
            raise InvalidInput("bandwidth_cap_mbps must be positive", field="bandwidth_cap_mbps")
        if self.image_cache_mib is not None and self.image_cache_mib <= 0:
            raise InvalidInput("image_cache_mib must be positive", field="image_cache_mib")


def _from_mapping(data: dict[str, Any]) -> AgentConfig:
    known = {f.name for f in fields(AgentConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise InvalidInput(f"unknown config keys: {', '.join(unknown)}", field=unknown[0])
    values = dict(data)
    for required in ("server", "state_dir"):
        if required not in values:
            raise InvalidInput(f"config needs {required!r}", field=required)
    values["state_dir"] = Path(values["state_dir"])
    values["devices"] = tuple(Device(**d) for d in values.get("devices", ()))
    return AgentConfig(**values)


def load_config(path: Path, **overrides: Any) -> AgentConfig:
    """Read a ``.toml`` or ``.json`` config; ``overrides`` that are not None win."""
    text = path.read_text(encoding="utf-8")
    try:
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (tomllib.TOMLDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInput(f"{path}: {exc}", field="config") from exc
    if not isinstance(data, dict):
        raise InvalidInput(f"{path}: not a table of settings", field="config")
    data.update({k: v for k, v in overrides.items() if v is not None})
    return _from_mapping(data)


def save_config(config: AgentConfig, path: Path) -> None:
    """Write the config as JSON (what the local testbed gives each agent)."""
    data = asdict(config)
    data["state_dir"] = str(config.state_dir)
    data = {k: v for k, v in data.items() if v is not None}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def config_from(**values: Any) -> AgentConfig:
    """A config from keyword values (the CLI without a file)."""
    return _from_mapping({k: v for k, v in values.items() if v is not None})

