"""Password hashing with Argon2id."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher as _Argon2
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError


class PasswordHasher:
    """Hashes and verifies passwords off the event loop (Argon2 is deliberately slow)."""

    def __init__(self, *, time_cost: int = 2, memory_cost: int = 19456, parallelism: int = 1):
        # OWASP's minimum Argon2id profile: 19 MiB, 2 iterations, 1 lane.
        self._argon = _Argon2(time_cost=time_cost, memory_cost=memory_cost, parallelism=parallelism)
        # A real hash to verify against when the account does not exist, so a login for an
        # unknown email takes as long as one with a wrong password.
        self._dummy = self._argon.hash("hangar-timing-equaliser")

    async def hash(self, password: str) -> str:
        """The Argon2id hash of `password`."""
        return await asyncio.to_thread(self._argon.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` matches; a missing hash costs the same time and fails."""

        def _verify() -> bool:
            try:
                return self._argon.verify(password_hash or self._dummy, password) and (
                    password_hash is not None
                )
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(_verify)
