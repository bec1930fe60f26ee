"""Optional Ed25519 signatures of an artifact's manifest (``pip install './[sign]'``, the ``cryptography`` package).

The signature (``manifest.sig``, 64 raw bytes) covers the manifest's canonical bytes, and the manifest holds the
sha256 of every file, so a valid signature vouches for the whole artifact. Keys are PEM files, e.g. from

    openssl genpkey -algorithm ed25519 -out signing-key.pem
    openssl pkey -in signing-key.pem -pubout -out signing-key.pub.pem
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Union

from .errors import ArtifactError, InputError
from .extras import require

PublicKey = Union[str, os.PathLike, bytes, Any]  # a PEM path, PEM bytes, 32 raw bytes or an Ed25519PublicKey


def sign(manifest_bytes: bytes, private_key_path: str | os.PathLike) -> bytes:
    """The Ed25519 signature of ``manifest_bytes`` with the PEM private key at ``private_key_path``."""
    serialization, ed25519, _ = _crypto()
    try:
        key = serialization.load_pem_private_key(Path(private_key_path).read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as e:
        raise InputError(f"{private_key_path} is not a readable unencrypted PEM private key: {e}") from e
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise InputError(f"{private_key_path} is not an Ed25519 key (openssl genpkey -algorithm ed25519)")
    return key.sign(manifest_bytes)


def verify(manifest_bytes: bytes, signature: bytes | None, public_key: PublicKey, where: str) -> None:
    """Raise ArtifactError unless ``signature`` is a valid signature of ``manifest_bytes`` by ``public_key``."""
    _, _, InvalidSignature = _crypto()
    key = _public_key(public_key)
    if signature is None:
        raise ArtifactError(f"{where} is not signed, but a public key was given: refused")
    try:
        key.verify(signature, manifest_bytes)
    except InvalidSignature:
        raise ArtifactError(f"{where}: the signature does not match the manifest for this public key: "
                            "modified, or signed by someone else") from None


def _public_key(public_key: PublicKey) -> Any:
    serialization, ed25519, _ = _crypto()
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return public_key
    try:
        if isinstance(public_key, bytes) and len(public_key) == 32:
            return ed25519.Ed25519PublicKey.from_public_bytes(public_key)
        data = public_key if isinstance(public_key, bytes) else Path(public_key).read_bytes()
        key = serialization.load_pem_public_key(data)
    except (OSError, ValueError, TypeError) as e:
        raise InputError(f"public_key is not an Ed25519 public key (PEM file, PEM bytes or 32 raw bytes): {e}") from e
    if not isinstance(key, ed25519.Ed25519PublicKey):
        raise InputError("public_key is not an Ed25519 key")
    return key


def _crypto() -> tuple[Any, Any, type[Exception]]:
    purpose = "a signed artifact"
    exceptions = require("cryptography.exceptions", "sign", purpose)
    serialization = require("cryptography.hazmat.primitives.serialization", "sign", purpose)
    ed25519 = require("cryptography.hazmat.primitives.asymmetric.ed25519", "sign", purpose)
    return serialization, ed25519, exceptions.InvalidSignature
