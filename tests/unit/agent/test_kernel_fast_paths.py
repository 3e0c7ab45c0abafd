"""Pure parts of the kernel layer's fast paths: grouped ledger commits, nft output, batches."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

from slicelab.agent.ledger import Ledger
from slicelab.agent.net.batch import Batch, Peer
from slicelab.agent.net.nat import _documents
from slicelab.agent.runtime.errors import KernelError


def test_a_transaction_commits_its_intents_together(tmp_path: Path) -> None:
    ledger = Ledger(tmp_path / "l.sqlite3")
    other = Ledger(tmp_path / "l.sqlite3")
    with ledger.transaction():
        ledger.begin("s", "netns", "a")
        with ledger.transaction():  # nested: joins the outer one
            ledger.begin("s", "link", "b")
        assert other.records() == []  # not visible (not durable) before the commit
    assert [r.name for r in other.records()] == ["a", "b"]
    with pytest.raises(RuntimeError), ledger.transaction():
        ledger.begin("s", "mount", "c")
        raise RuntimeError
    assert [r.name for r in other.records()] == ["a", "b", "c"]  # intents are kept


def test_nft_output_of_several_documents() -> None:
    out = '{"nftables": [{"a": 1}]}\n{"nftables": [{"b": 2}]}\n'
    assert _documents(out) == [{"a": 1}, {"b": 2}]
    assert _documents("") == []


class _Echo:
    """A socket stand-in that acks every request, failing those with ifindex 666."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    def send(self, data: bytes) -> int:
        self.sent.append(data)
        return len(data)

    def recv(self, size: int) -> bytes:
        data, out, at = self.sent[-1], b"", 0
        while at < len(data):
            length, _, _, seq, _ = struct.unpack_from("=IHHII", data, at)
            code = -19 if struct.unpack_from("=i", data, at + 20)[0] == 666 else 0
            out += struct.pack("=IHHIIi", 20, 2, 0, seq, 0, code)
            at += (length + 3) & ~3
        return out


def test_batch_sends_in_one_go_and_names_the_failed_request() -> None:
    sock = _Echo()
    batch = Batch(sock)  # type: ignore[arg-type]
    batch.add_veth("zv1", peer=Peer("eth0", 5, mtu=1450))
    batch.set_link(7, up=True, mtu=1450)
    batch.add_address(7, "10.0.0.2/24")
    assert len(batch) == 3
    assert batch.send() == {} and len(sock.sent) == 1
    batch.set_link(666, up=True)
    with pytest.raises(KernelError, match="set link 666"):
        batch.send()
