"""SSH public key parsing and judging."""

from __future__ import annotations

import base64
import shutil
import subprocess
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa, ec, ed25519, rsa

from slicelab.domain.errors import InvalidKey
from slicelab.identity.sshkeys import parse_public_key


def openssh(private: object) -> str:
    public = private.public_key()  # type: ignore[attr-defined]
    return public.public_bytes(serialization.Encoding.OpenSSH,
                               serialization.PublicFormat.OpenSSH).decode()


ED25519 = openssh(ed25519.Ed25519PrivateKey.generate())


@pytest.mark.parametrize(("make", "kind", "bits"), [
    (lambda: ed25519.Ed25519PrivateKey.generate(), "ssh-ed25519", 256),
    (lambda: ec.generate_private_key(ec.SECP256R1()), "ecdsa-sha2-nistp256", 256),
    (lambda: ec.generate_private_key(ec.SECP521R1()), "ecdsa-sha2-nistp521", 521),
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "ssh-rsa", 2048),
])
def test_accepted_keys(make: object, kind: str, bits: int) -> None:
    key = parse_public_key(openssh(make()) + " alice@laptop")  # type: ignore[operator]
    assert (key.type, key.bits, key.comment) == (kind, bits, "alice@laptop")
    assert key.fingerprint.startswith("SHA256:") and "=" not in key.fingerprint


def _dsa() -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return openssh(dsa.generate_private_key(1024))


@pytest.mark.parametrize(("text", "reason"), [
    (openssh(rsa.generate_private_key(public_exponent=65537, key_size=1024)),
     "1024 bits; at least 2048"),
    (_dsa(), "DSA keys are refused"),
    ("ssh-ed25519 AAAA$$notbase64", "not valid base64"),
    ("ssh-rsa " + ED25519.split()[1], "does not match the key inside"),
    ("ssh-foo AAAAB3NzaC1yc2E=", "unsupported key type"),
    ("ssh-ed25519", "'<type> <base64> [comment]'"),
    ("ssh-ed25519 " + base64.b64encode(b"\x00\x00\x00\x0bssh-ed25519\x00").decode(), "corrupt"),
])
def test_refused_keys_say_why(text: str, reason: str) -> None:
    with pytest.raises(InvalidKey, match=reason.replace("[", r"\[").replace("]", r"\]")) as info:
        parse_public_key(text)
    assert info.value.field == "key"


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen not installed")
def test_fingerprint_matches_ssh_keygen(tmp_path: Path) -> None:
    path = tmp_path / "k.pub"
    path.write_text(ED25519 + "\n")
    out = subprocess.run(["ssh-keygen", "-lf", str(path)], capture_output=True, text=True,
                         check=True).stdout
    assert out.split()[1] == parse_public_key(ED25519).fingerprint
