"""Wrenn-style ids (`usr-…`, `team-…`): a prefix and the core UUID in base 36."""

from __future__ import annotations

import uuid

_ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyz"
_WIDTH = 25  # 36**25 > 2**128

USER = "usr"
TEAM = "team"
KEY = "key"
CAPSULE = "cl"
CHANNEL = "ch"
HOST = "host"


def encode(prefix: str, core_id: str) -> str:
    """Render a core UUID as a Wrenn id."""
    n = uuid.UUID(core_id).int
    digits = []
    while n:
        n, r = divmod(n, 36)
        digits.append(_ALPHABET[r])
    return f"{prefix}-{''.join(reversed(digits)).rjust(_WIDTH, '0')}"


def decode(prefix: str, wire_id: str) -> str:
    """The core UUID behind a Wrenn id; "" (which matches nothing) when malformed."""
    head, sep, body = wire_id.partition("-")
    if head != prefix or not sep or len(body) != _WIDTH:
        return ""
    if any(c not in _ALPHABET for c in body):
        return ""
    n = int(body, 36)
    return str(uuid.UUID(int=n)) if n < 1 << 128 else ""
