"""API token secrets."""

from __future__ import annotations

from slicelab.identity.tokens import TOKEN_PREFIX, hash_token, looks_like_token, new_token


def test_tokens_are_random_prefixed_and_hashed() -> None:
    a, b = new_token(), new_token()
    assert a != b and a.startswith(TOKEN_PREFIX) and looks_like_token(a)
    assert len(a) >= 40
    assert hash_token(a) == hash_token(a) != hash_token(b)
    assert a not in hash_token(a) and len(hash_token(a)) == 64
