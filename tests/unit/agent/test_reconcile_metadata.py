"""The in-sliver metadata endpoint, served from what reconcile knows."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from slicelab.agent.metadata import MetadataServer, metadata_index

DOC = {"generation": 3, "node": {"urn": "urn:publicid:IDN+test+node+host1", "name": "host1"},
       "slivers": [{"sliver_id": "s-1", "urn": "urn:publicid:IDN+test+sliver+s-1",
                    "slice_urn": "urn:publicid:IDN+test+slice+s", "hostname": "n1.s.p.test",
                    "manifest": "<rspec/>", "ssh_keys": ["ssh-ed25519 AAAA alice"]},
                   {"sliver_id": "s-2", "hostname": "n2.s.p.test"}]}


@pytest.fixture
def server() -> Iterator[MetadataServer]:
    server = MetadataServer(address="127.0.0.1", port=0)
    server.start()
    yield server
    server.close()


def test_the_index_maps_control_addresses_to_slivers() -> None:
    index = metadata_index(DOC, {"s-1": "10.200.0.2"})
    assert list(index) == ["10.200.0.2"]
    assert index["10.200.0.2"]["identity"]["node_urn"] == "urn:publicid:IDN+test+node+host1"


def test_a_sliver_gets_its_own_identity_keys_and_manifest(server: MetadataServer) -> None:
    server.update(metadata_index(DOC, {"s-1": "127.0.0.1"}))
    base = f"http://127.0.0.1:{server.port}"
    identity = httpx.get(f"{base}/v1/identity").json()
    assert identity["hostname"] == "n1.s.p.test"
    assert identity["sliver_urn"] == "urn:publicid:IDN+test+sliver+s-1"
    assert httpx.get(f"{base}/v1/keys").json() == {"ssh_keys": ["ssh-ed25519 AAAA alice"]}
    assert httpx.get(f"{base}/v1/manifest").json() == {"manifest": "<rspec/>"}
    assert httpx.get(f"{base}/v1/nothing").status_code == 404


def test_an_unknown_address_gets_nothing(server: MetadataServer) -> None:
    server.update(metadata_index(DOC, {"s-1": "10.200.0.2"}))
    response = httpx.get(f"http://127.0.0.1:{server.port}/v1")
    assert response.status_code == 403
