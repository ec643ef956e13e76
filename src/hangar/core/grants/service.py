"""Issue and redeem single-use grants. Services never commit; the caller does."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.clock import utcnow
from hangar.core.errors import InvalidInput, Unauthenticated
from hangar.core.grants.models import Grant, GrantPurpose
from hangar.core.grants.repository import GrantRepository
from hangar.core.security.opaque import generate_secret, hash_secret

MAX_TTL_SECONDS = 7 * 24 * 3600  # a grant is a short-lived key; a week is already generous


@dataclass(frozen=True)
class Issued:
    """A new grant and its secret, which is shown once and never stored."""

    token: str
    grant: Grant

    @property
    def ttl_seconds(self) -> int:
        """Whole seconds it lives."""
        return int((self.grant.expires_at - self.grant.created_at).total_seconds())


class GrantService:
    """Single-use tokens: one purpose, one subject, a TTL, spent by the first redeem."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session
        self.grants = GrantRepository(session)

    async def issue(
        self,
        purpose: GrantPurpose,
        subject_id: str,
        ttl_seconds: int,
        *,
        team_id: str | None = None,
        principal_id: str | None = None,
        scope: str | None = None,
        prefix: str = "",
        prune: bool = True,
    ) -> Issued:
        """A new grant of `purpose` on `subject_id`, valid `ttl_seconds`.

        `prune` forgets the subject's spent and expired grants of the purpose first; pass
        False where their history is shown (GPU Go lists install tokens as used or expired).
        """
        if not 0 < ttl_seconds <= MAX_TTL_SECONDS:
            raise InvalidInput(f"a grant lives 1 to {MAX_TTL_SECONDS} seconds")
        now = utcnow()
        if prune:
            await self.grants.prune(purpose, subject_id, now)
        token = generate_secret(prefix=prefix, nbytes=32)
        grant = await self.grants.add(
            Grant(
                purpose=purpose,
                subject_id=subject_id,
                team_id=team_id,
                principal_id=principal_id,
                scope=scope,
                token_hash=hash_secret(token),
                created_at=now,
                expires_at=now + timedelta(seconds=ttl_seconds),
            )
        )
        return Issued(token, grant)

    async def redeem(
        self, token: str, purpose: GrantPurpose, subject_id: str | None = None
    ) -> Grant:
        """Spend a grant of `purpose` (on `subject_id` when given); else Unauthenticated.

        The token is matched alone, then its purpose and subject checked: one presented in the
        wrong place is spent too, and refused, so a token leaked through a wrong URL is worth
        nothing afterwards. The caller commits whatever the outcome.
        """
        grant = await self.grants.spend(hash_secret(token), utcnow())
        if grant is None or grant.purpose != purpose:
            raise Unauthenticated("the token is invalid, already used or expired")
        if subject_id is not None and grant.subject_id != subject_id:
            raise Unauthenticated("the token is invalid, already used or expired")
        return grant
