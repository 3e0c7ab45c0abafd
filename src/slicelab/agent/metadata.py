"""The in-sliver metadata endpoint: who am I, my manifest, my members' SSH keys.

One small HTTP server per agent, bound to the control subnet's gateway address (every
sliver's default gateway) on port 80. A sliver's control address is unique on the node
and its control port is isolated on the bridge, so the source address of a request says
which sliver asks; the server answers only a known control address, with JSON:

    GET /v1            everything below in one object
    GET /v1/identity   {"sliver_id", "sliver_urn", "slice_urn", "node_urn", "hostname", ...}
    GET /v1/manifest   {"manifest": "<rspec ...>"}
    GET /v1/keys       {"ssh_keys": ["ssh-ed25519 ..."]}

The socket is opened with ``IP_FREEBIND`` so that the server can start before the
runtime has put the gateway address on the control bridge.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["MetadataServer", "metadata_for", "metadata_index"]

log = logging.getLogger(__name__)
_IP_FREEBIND = getattr(socket, "IP_FREEBIND", 15)

Lookup = Callable[[str], dict[str, Any] | None]


def metadata_for(sliver: dict[str, Any], *, node: dict[str, Any]) -> dict[str, Any]:
    """The metadata of one sliver of a desired state document."""
    identity = {key: sliver.get(key) for key in
                ("sliver_id", "slice_urn", "project", "slice", "client_id", "hostname",
                 "image", "expires")}
    identity.update(sliver_urn=sliver.get("urn"), node_urn=node.get("urn"),
                    node_name=node.get("name"))
    return {"identity": identity, "manifest": sliver.get("manifest") or "",
            "ssh_keys": list(sliver.get("ssh_keys", []))}


def metadata_index(doc: dict[str, Any], control_ips: dict[str, str]) -> dict[str, Any]:
    """Control address -> metadata, for the slivers of ``doc`` that have an address."""
    node = doc.get("node", {})
    index: dict[str, Any] = {}
    for sliver in doc.get("slivers", []):
        address = control_ips.get(sliver.get("sliver_id", ""))
        if address:
            index[address] = metadata_for(sliver, node=node)
    return index


def _view(data: dict[str, Any], path: str) -> dict[str, Any] | None:
    views: dict[str, Callable[[], dict[str, Any]]] = {
        "/v1": lambda: data,
        "/v1/identity": lambda: data["identity"],
        "/v1/manifest": lambda: {"manifest": data["manifest"]},
        "/v1/keys": lambda: {"ssh_keys": data["ssh_keys"]},
    }
    view = views.get(path.rstrip("/") or "/v1")
    return view() if view else None


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def do_GET(self) -> None:
        data = self.server.lookup(self.client_address[0])
        if data is None:
            self._send(403, {"detail": "not a sliver of this node"})
            return
        body = _view(data, self.path.split("?", 1)[0])
        if body is None:
            self._send(404, {"detail": f"no metadata at {self.path}"})
        else:
            self._send(200, body)

    def _send(self, status: int, body: dict[str, Any]) -> None:
        payload = json.dumps(body, indent=1).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metadata: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], lookup: Lookup) -> None:
        self.lookup = lookup
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        self.socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.socket.setsockopt(socket.IPPROTO_IP, _IP_FREEBIND, 1)
        super().server_bind()


class MetadataServer:
    """Serves metadata on ``address:port`` from ``index`` (control address -> data)."""

    def __init__(self, *, address: str, port: int = 80) -> None:
        self.index: dict[str, Any] = {}
        self._server = _Server((address, port), lambda ip: self.index.get(ip))
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        name="slicelab-metadata", daemon=True)

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def start(self) -> None:
        self._thread.start()

    def update(self, index: dict[str, Any]) -> None:
        self.index = dict(index)

    def close(self) -> None:
        if self._thread.is_alive():
            self._server.shutdown()
        self._server.server_close()
