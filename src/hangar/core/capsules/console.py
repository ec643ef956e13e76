"""One-time console tokens: a team member asks for one, a WebSocket client spends it once."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import delete, or_, update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.models import Capsule, CapsuleStatus, ConsoleToken
from hangar.core.capsules.repository import CapsuleRepository
from hangar.core.clock import utcnow
from hangar.core.config import CapsuleSettings
from hangar.core.errors import InvalidState, NotFound, Unauthenticated
from hangar.core.security.opaque import generate_secret, hash_secret

# The console's program: a login shell, bash where the template has it, else sh.
LOGIN_SHELL: tuple[str, ...] = (
    "/bin/sh",
    "-c",
    "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi",
)


class ConsoleService:
    """Issue and redeem console tokens. Services never commit; the caller does."""

    def __init__(self, session: AsyncSession, settings: CapsuleSettings) -> None:
        self.session = session
        self.settings = settings
        self.capsules = CapsuleRepository(session)

    async def issue(self, team_id: str, capsule_id: str) -> tuple[str, int]:
        """A new token for a running capsule of the team and its lifetime in seconds."""
        capsule = await self.capsules.get_live(team_id, capsule_id) if capsule_id else None
        if capsule is None:
            raise NotFound("capsule not found")
        if capsule.status != CapsuleStatus.RUNNING:
            raise InvalidState(f"capsule is {capsule.status}, not running")
        now = utcnow()
        # Spent and expired tokens are of no use to anyone: clear them as new ones are made.
        await self.session.execute(
            delete(ConsoleToken).where(
                ConsoleToken.capsule_id == capsule.id,
                or_(ConsoleToken.used_at.is_not(None), ConsoleToken.expires_at <= now),
            )
        )
        ttl = self.settings.console_token_ttl_seconds
        token = generate_secret(nbytes=32)
        self.session.add(
            ConsoleToken(
                capsule_id=capsule.id,
                token_hash=hash_secret(token),
                expires_at=now + timedelta(seconds=ttl),
            )
        )
        await self.session.flush()
        return token, ttl

    async def redeem(self, capsule_id: str, token: str) -> Capsule:
        """Spend a token of `capsule_id`; the capsule it opens, else Unauthenticated.

        One conditional UPDATE, so of two concurrent redeems exactly one changes the row: the
        loser's UPDATE waits for the winner's commit and then matches nothing. It matches the
        token alone, not the capsule: a token presented for another capsule is spent too, and
        then refused, so a token that leaked through a wrong URL is worth nothing afterwards.
        """
        now = utcnow()
        spent = (
            (
                await self.session.execute(
                    update(ConsoleToken)
                    .where(
                        ConsoleToken.token_hash == hash_secret(token),
                        ConsoleToken.used_at.is_(None),
                        ConsoleToken.expires_at > now,
                    )
                    .values(used_at=now)
                    .returning(ConsoleToken.capsule_id)
                    .execution_options(synchronize_session=False)
                )
            )
            .scalars()
            .all()
        )
        if spent != [capsule_id]:
            raise Unauthenticated("console token is invalid, already used or expired")
        capsule = await self.capsules.get_any(capsule_id)
        if capsule is None or capsule.status == CapsuleStatus.STOPPED:
            raise NotFound("capsule not found")
        return capsule
