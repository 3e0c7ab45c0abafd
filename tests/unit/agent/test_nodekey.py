"""Node request signing: good requests pass, each kind of bad one fails with its reason."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from slicelab.domain.errors import AuthenticationFailed, InvalidInput, Unavailable
from slicelab.identity import nodekey
from slicelab.identity.nodekey import NodeAuthenticationFailed, NonceCache, sign, verify

KEY = bytes(range(32))
NOW = 1_700_000_000.0


def _keys(node_id: str) -> bytes | None:
    return KEY if node_id == "n-1" else None


def _verify(headers: dict[str, str], *, body: bytes = b"{}", now: float = NOW,
            nonces: NonceCache | None = None, path: str = "/agent/v1/report") -> str:
    return verify(headers, "POST", path, body, key_of=_keys, now=now,
                  nonces=NonceCache() if nonces is None else nonces)


def _signed(**kwargs: object) -> dict[str, str]:
    return sign(KEY, "POST", "/agent/v1/report", b"{}", node_id="n-1", now=NOW, **kwargs)


def test_signature_is_the_documented_hmac() -> None:
    nonce = "0" * 32
    headers = _signed(nonce=nonce)
    message = f"POST\n/agent/v1/report\n{hashlib.sha256(b'{}').hexdigest()}\n{int(NOW)}\n{nonce}"
    expected = hmac.new(KEY, message.encode(), hashlib.sha256).hexdigest()
    assert headers == {"X-Slicelab-Node": "n-1", "X-Slicelab-Timestamp": str(int(NOW)),
                       "X-Slicelab-Nonce": nonce, "X-Slicelab-Signature": expected}


def test_a_good_request_passes_and_headers_are_case_insensitive() -> None:
    headers = {k.lower(): v for k, v in _signed().items()}
    assert _verify(headers) == "n-1"


@pytest.mark.parametrize(("change", "reason"), [
    ({"X-Slicelab-Node": "n-2"}, "unknown"),
    ({"X-Slicelab-Signature": "f" * 64}, "forged"),
    ({"X-Slicelab-Nonce": "not-hex"}, "forged"),
])
def test_bad_headers_fail_with_their_reason(change: dict[str, str], reason: str) -> None:
    with pytest.raises(NodeAuthenticationFailed) as caught:
        _verify({**_signed(), **change})
    assert caught.value.reason == reason
    assert isinstance(caught.value, AuthenticationFailed)
    assert caught.value.status == 401


def test_a_changed_body_or_path_is_forged() -> None:
    with pytest.raises(NodeAuthenticationFailed, match="forged"):
        _verify(_signed(), body=b'{"x":1}')
    with pytest.raises(NodeAuthenticationFailed, match="forged"):
        _verify(_signed(), path="/agent/v1/report?x=1")


def test_a_missing_header_is_forged() -> None:
    headers = _signed()
    del headers["X-Slicelab-Signature"]
    with pytest.raises(NodeAuthenticationFailed, match="forged"):
        _verify(headers)


@pytest.mark.parametrize("skew", [-61, 61, 3600])
def test_a_timestamp_outside_the_window_is_stale(skew: int) -> None:
    with pytest.raises(NodeAuthenticationFailed) as caught:
        _verify(_signed(), now=NOW + skew)
    assert caught.value.reason == "stale"


def test_within_the_window_passes() -> None:
    assert _verify(_signed(), now=NOW + 60) == "n-1"


def test_a_replayed_nonce_fails_and_a_forgery_does_not_use_one_up() -> None:
    cache = NonceCache()
    headers = _signed()
    with pytest.raises(NodeAuthenticationFailed):
        _verify({**headers, "X-Slicelab-Signature": "0" * 64}, nonces=cache)
    assert len(cache) == 0
    assert _verify(headers, nonces=cache) == "n-1"
    with pytest.raises(NodeAuthenticationFailed) as caught:
        _verify(headers, nonces=cache, now=NOW + 30)
    assert caught.value.reason == "replayed"


def test_nonces_expire_and_memory_is_bounded() -> None:
    cache = NonceCache(window=60, capacity=3)
    for i in range(3):
        assert cache.add("n", f"{i:032x}", timestamp=int(NOW), now=NOW)
    with pytest.raises(Unavailable):
        cache.add("n", "f" * 32, timestamp=int(NOW), now=NOW + 1)
    assert cache.add("n", "f" * 32, timestamp=int(NOW) + 61, now=NOW + 61)
    assert len(cache) == 1
    assert not cache.add("n", "f" * 32, timestamp=int(NOW) + 61, now=NOW + 62)


def test_key_encoding_round_trips_and_checks_length() -> None:
    key = nodekey.new_key()
    assert nodekey.decode_key(nodekey.encode_key(key)) == key
    with pytest.raises(InvalidInput):
        nodekey.decode_key(nodekey.encode_key(b"short"))
    with pytest.raises(InvalidInput):
        nodekey.decode_key("not base64!!")


@given(body=st.binary(max_size=256), path=st.text(min_size=1, max_size=40))
def test_any_signed_request_verifies(body: bytes, path: str) -> None:
    headers = sign(KEY, "GET", path, body, node_id="n-1", now=NOW)
    assert verify(headers, "get", path, body, key_of=_keys, now=NOW,
                  nonces=NonceCache()) == "n-1"
