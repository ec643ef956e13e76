"""Encryption at rest for secrets the platform must read back (channel configs).

AES-256-GCM with a key from settings, else one generated once and kept (0600) in the data
directory. Several keys may be configured: the first seals, all open, so keys can rotate.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Sequence
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_FILE = "sealing-keys"
_VERSION = b"\x01"


class SealingError(Exception):
    """A sealed value could not be opened with any known key."""


def load_or_create_sealing_keys(configured: Sequence[str], data_dir: Path) -> list[bytes]:
    """Keys from settings (base64, 32 bytes each), else the data directory's, made on first use."""
    if configured:
        keys = [base64.b64decode(k) for k in configured]
    else:
        path = data_dir / KEY_FILE
        if not path.exists():
            data_dir.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(base64.b64encode(AESGCM.generate_key(bit_length=256)).decode() + "\n")
            tmp.replace(path)
        keys = [base64.b64decode(line) for line in path.read_text().split() if line]
    if not keys or any(len(k) != 32 for k in keys):
        raise ValueError("sealing keys must be base64 of 32 bytes")
    return keys


class Sealer:
    """Seal and open small secrets; the output names neither key nor plaintext length bucket."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        self._keys = [AESGCM(k) for k in keys]

    def seal(self, plaintext: bytes, *, context: bytes) -> str:
        """Encrypt, binding the ciphertext to `context` (e.g. the owning row's id)."""
        nonce = secrets.token_bytes(12)
        sealed = self._keys[0].encrypt(nonce, plaintext, context)
        return base64.b64encode(_VERSION + nonce + sealed).decode()

    def open(self, token: str, *, context: bytes) -> bytes:
        """Decrypt what `seal` produced with the same context."""
        raw = base64.b64decode(token)
        if raw[:1] != _VERSION:
            raise SealingError("unknown sealed format")
        nonce, sealed = raw[1:13], raw[13:]
        for key in self._keys:
            try:
                return key.decrypt(nonce, sealed, context)
            except InvalidTag:
                continue
        raise SealingError("no key opens this value")
