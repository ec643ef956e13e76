"""One-time console tokens: a team member asks for one, a WebSocket client spends it once."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.capsules.models import Capsule, CapsuleStatus
from hangar.core.capsules.repository import CapsuleRepository
from hangar.core.config import CapsuleSettings
from hangar.core.errors import InvalidState, NotFound
from hangar.core.grants.models import GrantPurpose
from hangar.core.grants.service import GrantService

# The console's program: a login shell, bash where the template has it, else sh.
LOGIN_SHELL: tuple[str, ...] = (
    "/bin/sh",
    "-c",
    "if command -v bash >/dev/null 2>&1; then exec bash -l; else exec sh -l; fi",
)


class ConsoleService:
    """Issue and redeem console tokens (grants of purpose `console`). Services never commit."""

    def __init__(self, session: AsyncSession, settings: CapsuleSettings) -> None:
        self.session = session
        self.settings = settings
        self.capsules = CapsuleRepository(session)
        self.grants = GrantService(session)

    async def issue(self, team_id: str, capsule_id: str) -> tuple[str, int]:
        """A new token for a running capsule of the team and its lifetime in seconds."""
        capsule = await self.capsules.get_live(team_id, capsule_id) if capsule_id else None
        if capsule is None:
            raise NotFound("capsule not found")
        if capsule.status != CapsuleStatus.RUNNING:
            raise InvalidState(f"capsule is {capsule.status}, not running")
        ttl = self.settings.console_token_ttl_seconds
        issued = await self.grants.issue(GrantPurpose.CONSOLE, capsule.id, ttl, team_id=team_id)
        return issued.token, ttl

    async def redeem(self, capsule_id: str, token: str) -> Capsule:
        """Spend a token of `capsule_id`; the capsule it opens, else Unauthenticated.

        The grant's one conditional UPDATE spends it (see GrantRepository.spend); one
        presented for another capsule is spent too, and refused.
        """
        await self.grants.redeem(token, GrantPurpose.CONSOLE, capsule_id)
        capsule = await self.capsules.get_any(capsule_id)
        if capsule is None or capsule.status == CapsuleStatus.STOPPED:
            raise NotFound("capsule not found")
        return capsule
