"""Creating, listing, revoking and authenticating team API keys."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.apikeys.cache import API_KEY_DELETED, PrincipalCache, drop_now_and_on_commit
from hangar.core.apikeys.models import ApiKey
from hangar.core.clock import utcnow
from hangar.core.errors import InvalidInput, Unauthenticated
from hangar.core.events.outbox import record
from hangar.core.identity import rules
from hangar.core.identity.models import Team
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.core.identity.service import TeamService
from hangar.core.security.opaque import generate_secret, hash_secret

DEFAULT_KEY_NAME = "Unnamed API Key"
DISPLAY_PREFIX_LENGTH = 12
# `last_used` is written at most this often per key, so a busy key does not turn every
# read request into a database write.
LAST_USED_RESOLUTION = timedelta(seconds=30)


@dataclass(frozen=True, slots=True)
class IssuedKey:
    """A freshly created key: the only moment its plaintext exists."""

    key: ApiKey
    plaintext: str


class ApiKeyService:
    """Team API keys. The plaintext is shown once and kept only as a SHA-256 hash."""

    def __init__(
        self, session: AsyncSession, *, prefix: str, cache: PrincipalCache | None = None
    ) -> None:
        self.session = session
        self.prefix = prefix
        self.teams = TeamService(session)
        self.cache = cache

    async def delete_for_team(self, team_id: str) -> None:
        """Delete every key of a team (a `TeamService` deletion hook)."""
        await self.session.execute(delete(ApiKey).where(ApiKey.team_id == team_id))
        if self.cache is not None:
            cache = self.cache
            drop_now_and_on_commit(self.session, lambda: cache.drop_team(team_id))

    async def create(self, principal: Principal, name: str | None) -> IssuedKey:
        """A new key for the caller's team."""
        if principal.team_id is None:
            raise InvalidInput("credential has no team", code="no_team")
        await self.teams.access(principal, principal.team_id)
        name = (name or "").strip() or DEFAULT_KEY_NAME
        if len(name) > 128:
            raise InvalidInput("name must be at most 128 characters")
        if not rules.storable(name):
            raise InvalidInput("name must not contain NUL characters")
        plaintext = generate_secret(self.prefix, 16)
        key = ApiKey(
            team_id=principal.team_id,
            created_by=principal.user_id,
            name=name,
            key_prefix=plaintext[:DISPLAY_PREFIX_LENGTH] + "...",
            key_hash=hash_secret(plaintext),
        )
        self.session.add(key)
        await self.session.flush()
        return IssuedKey(key, plaintext)

    async def list(self, principal: Principal) -> Sequence[ApiKey]:
        """The caller's team's keys, newest first."""
        if principal.team_id is None:
            return []
        await self.teams.access(principal, principal.team_id)
        stmt = (
            select(ApiKey)
            .where(ApiKey.team_id == principal.team_id)
            .order_by(ApiKey.created_at.desc(), ApiKey.id)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def revoke(self, principal: Principal, key_id: str) -> None:
        """Delete a key of the caller's team. Idempotent; other teams' keys are untouched."""
        if principal.team_id is None:
            return
        await self.teams.access(principal, principal.team_id)
        done = await self.session.execute(
            delete(ApiKey).where(ApiKey.id == key_id, ApiKey.team_id == principal.team_id)
        )
        if getattr(done, "rowcount", 0) == 1:
            # Tells the other replicas' caches (`cache.forget_deleted`).
            payload = {"api_key_id": key_id}
            record(self.session, API_KEY_DELETED, team_id=principal.team_id, payload=payload)
        if self.cache is not None:
            cache = self.cache
            drop_now_and_on_commit(self.session, lambda: cache.drop_key(key_id))

    async def authenticate(self, plaintext: str) -> Principal:
        """The principal behind a presented key; Unauthenticated for unknown keys.

        A cached principal skips the database (and the throttled `last_used` stamp, which a
        cache hit within its few seconds could not have moved anyway).
        """
        key_hash = hash_secret(plaintext)
        if self.cache is not None and (cached := self.cache.get(key_hash)) is not None:
            return cached
        stmt = (
            select(ApiKey)
            .join(Team, Team.id == ApiKey.team_id)
            .where(ApiKey.key_hash == key_hash, Team.deleted_at.is_(None))
        )
        key = (await self.session.execute(stmt)).scalar_one_or_none()
        if key is None:
            raise Unauthenticated("invalid API key", code="invalid_api_key")
        now = utcnow()
        if key.last_used_at is None or now - key.last_used_at >= LAST_USED_RESOLUTION:
            key.last_used_at = now
        principal = Principal(
            kind=CredentialKind.API_KEY,
            team_id=key.team_id,
            user_id=key.created_by,
            api_key_id=key.id,
        )
        if self.cache is not None:
            self.cache.put(key_hash, principal)
        return principal
