"""Opaque high-entropy secrets (API keys, PATs, one-time tokens), stored only as hashes."""

from __future__ import annotations

import hashlib
import hmac
import secrets


def generate_secret(prefix: str = "", nbytes: int = 32) -> str:
    """A new random secret, hex encoded, with an optional recognisable prefix."""
    return prefix + secrets.token_hex(nbytes)


def hash_secret(secret: str) -> str:
    """SHA-256 of a secret. Enough for 256-bit random values, and fast enough per request."""
    return hashlib.sha256(secret.encode()).hexdigest()


def same_secret(a: str, b: str) -> bool:
    """Constant-time comparison."""
    return hmac.compare_digest(a.encode(), b.encode())
