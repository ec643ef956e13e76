"""SSH public keys as people paste them: parsed, normalised and fingerprinted."""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.serialization import load_ssh_public_key

from hangar.core.errors import InvalidInput

MAX_KEY_CHARS = 16384  # an 8192-bit RSA key is about 1400 characters; this is plenty


@dataclass(frozen=True)
class PublicKey:
    """`type base64` without the comment, and OpenSSH's SHA256 fingerprint of it."""

    openssh: str
    fingerprint: str


def parse(text: str) -> PublicKey:
    """A public key from an `authorized_keys` line, else InvalidInput."""
    parts = text.strip().split()
    if len(text) > MAX_KEY_CHARS or len(parts) < 2:
        raise InvalidInput("pub_key must be an OpenSSH public key line")
    line = f"{parts[0]} {parts[1]}"
    try:
        load_ssh_public_key(line.encode())  # refuses malformed blobs and unknown types
        blob = base64.b64decode(parts[1], validate=True)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise InvalidInput("pub_key must be an OpenSSH public key line") from exc
    digest = base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")
    return PublicKey(line, f"SHA256:{digest}")
