"""Claiming, completing and replaying idempotency keys, safe across requests and replicas.

A key is claimed by one INSERT that the unique (scope, key) constraint lets only one request
win, committed at once in its own unit of work, so every replica sees the claim before the
winner does anything. The winner's response is stored by `complete` inside the request's own
unit of work: the change and its record commit together, so a stored answer always describes
a change that happened, and a change that happened always has its answer (a restart replays
it). A failed request releases its claim, since it changed nothing a repeat should not redo.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

import structlog
from sqlalchemy import delete, select, update
from sqlalchemy.engine import CursorResult
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.clock import utcnow
from hangar.core.config import IdempotencySettings
from hangar.core.db.engine import Database
from hangar.core.db.uow import checkpoint
from hangar.core.db.upsert import insert_for
from hangar.core.errors import Conflict, DomainError
from hangar.core.idempotency.models import IdempotencyKey, KeyState
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.core.ids import new_id

log = structlog.get_logger("hangar.idempotency")

MAX_KEY_LENGTH = 255
_POLL_SECONDS = (0.02, 0.05, 0.1, 0.2)


class KeyReused(DomainError):
    """The key was first used for a different request (faces answer 422)."""

    code = "idempotency_key_reused"


class KeyInFlight(Conflict):
    """The first request with this key is still running (faces answer 409)."""

    code = "idempotency_key_in_flight"


@dataclass(frozen=True, slots=True)
class Claim:
    """This request owns the key: it runs, then completes or releases it."""

    id: str


@dataclass(frozen=True, slots=True)
class StoredResponse:
    """The answer given to the first request with a key."""

    status_code: int
    content_type: str | None
    body: bytes


def scope_of(principal: Principal | None) -> str:
    """Whose keys these are: a user's own, a team's API keys', or nobody's."""
    if principal is None:
        return "anonymous"
    if principal.kind is CredentialKind.API_KEY:
        return f"team:{principal.team_id}"
    return f"user:{principal.user_id}:{principal.team_id}"


def request_hash(method: str, path: str, query: str, body: bytes) -> str:
    """What makes two requests the same request."""
    digest = hashlib.sha256()
    for part in (method.upper().encode(), path.encode(), query.encode()):
        digest.update(part)
        digest.update(b"\0")
    digest.update(body)
    return digest.hexdigest()


class IdempotencyService:
    """Keys on the database, each claim and release in its own short unit of work."""

    def __init__(self, db: Database, settings: IdempotencySettings) -> None:
        self.db = db
        self.settings = settings

    async def claim(
        self, session: AsyncSession, scope: str, key: str, fingerprint: str
    ) -> Claim | StoredResponse:
        """Own `key` for this request, or the stored answer of the first one; a repeat of a
        running request waits for it up to `wait_seconds`, then KeyInFlight.

        On the request's own session, before it has changed anything: each attempt ends its
        transaction (committing a claim), so a waiting request holds no connection while it
        sleeps, and a request never needs two connections at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.settings.wait_seconds
        for attempt in range(1_000_000):
            outcome = await self._try_claim(session, scope, key, fingerprint)
            if outcome == "retry":
                continue
            if outcome != "wait":
                assert not isinstance(outcome, str)
                return outcome
            if loop.time() >= deadline:
                raise KeyInFlight("a request with this Idempotency-Key is still in progress")
            await asyncio.sleep(_POLL_SECONDS[min(attempt, len(_POLL_SECONDS) - 1)])
        raise KeyInFlight("a request with this Idempotency-Key is still in progress")

    async def _try_claim(
        self, session: AsyncSession, scope: str, key: str, fingerprint: str
    ) -> Claim | StoredResponse | Literal["retry", "wait"]:
        """One attempt: claimed, answered, gone meanwhile (retry at once), or in flight."""
        now = utcnow()
        try:
            outcome = await self._attempt(session, scope, key, fingerprint, now)
        except BaseException:
            await session.rollback()
            raise
        # End the attempt's transaction: a claim or a clean-up becomes visible to every
        # replica, and a read releases its connection before the caller sleeps.
        await checkpoint(session)
        return outcome

    async def _attempt(
        self, session: AsyncSession, scope: str, key: str, fingerprint: str, now: datetime
    ) -> Claim | StoredResponse | Literal["retry", "wait"]:
        row_id = await self._insert(session, scope, key, fingerprint)
        if row_id is not None:
            return Claim(row_id)
        row = (
            await session.execute(
                select(IdempotencyKey).where(
                    IdempotencyKey.scope == scope, IdempotencyKey.key == key
                )
            )
        ).scalar_one_or_none()
        if row is None:  # released or purged between the insert and the read
            return "retry"
        if row.expires_at <= now:
            # Kept past its time: forget it (conditionally, a racing repeat may have done
            # so and claimed afresh) and claim the key anew.
            await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.id == row.id, IdempotencyKey.expires_at <= now
                )
            )
            return "retry"
        if row.request_hash != fingerprint:
            raise KeyReused("this Idempotency-Key was used for a different request; use a new key")
        if row.state == KeyState.DONE:
            return StoredResponse(row.status_code or 200, row.content_type, row.body or b"")
        if row.locked_until <= now and await self._take_over(session, row.id, now):
            return Claim(row.id)
        return "wait"

    async def _insert(
        self, session: AsyncSession, scope: str, key: str, fingerprint: str
    ) -> str | None:
        """The claim itself: one INSERT the unique constraint lets only one caller win."""
        now = utcnow()
        values: dict[str, object] = {
            "id": new_id(),
            "created_at": now,
            "scope": scope,
            "key": key,
            "request_hash": fingerprint,
            "state": KeyState.IN_FLIGHT,
            "locked_until": now + timedelta(seconds=self.settings.lease_seconds),
            "expires_at": now + timedelta(seconds=self.settings.ttl_seconds),
        }
        stmt = (
            insert_for(session, IdempotencyKey)
            .values(**values)
            .on_conflict_do_nothing()
            .returning(IdempotencyKey.id)
        )
        # RETURNING, not rowcount: it says on both databases whether this INSERT won.
        won: str | None = (await session.execute(stmt)).scalar_one_or_none()
        return won

    async def _take_over(self, session: AsyncSession, row_id: str, now: datetime) -> bool:
        """Claim a key whose first request was abandoned; one conditional UPDATE, one winner."""
        result = await session.execute(
            update(IdempotencyKey)
            .where(
                IdempotencyKey.id == row_id,
                IdempotencyKey.state == KeyState.IN_FLIGHT,
                IdempotencyKey.locked_until <= now,
            )
            .values(locked_until=utcnow() + timedelta(seconds=self.settings.lease_seconds))
        )
        return isinstance(result, CursorResult) and result.rowcount == 1

    @staticmethod
    async def complete(session: AsyncSession, claim: Claim, response: StoredResponse) -> None:
        """Store the answer in the request's own unit of work (its commit makes both durable)."""
        await session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.id == claim.id, IdempotencyKey.state == KeyState.IN_FLIGHT)
            .values(
                state=KeyState.DONE,
                status_code=response.status_code,
                content_type=response.content_type,
                body=response.body,
            )
            .execution_options(synchronize_session=False)
        )

    @staticmethod
    async def release(session: AsyncSession, claim: Claim) -> None:
        """Give the key back after a failure, so a repeat runs the request again; on the
        failed request's own session, rolled back first (its work is not kept)."""
        await session.rollback()
        await session.execute(
            delete(IdempotencyKey).where(
                IdempotencyKey.id == claim.id, IdempotencyKey.state == KeyState.IN_FLIGHT
            )
        )
        await checkpoint(session)

    async def purge_expired(self) -> int:
        """Forget keys kept past their time (a background job calls this)."""
        async with self.db.unit_of_work() as uow:
            result = await uow.session.execute(
                delete(IdempotencyKey).where(IdempotencyKey.expires_at <= utcnow())
            )
            await uow.commit()
        return result.rowcount if isinstance(result, CursorResult) else 0

    async def purge_forever(self, every_seconds: float = 600.0) -> None:
        """The background job: forget expired keys every so often, until cancelled."""
        while True:
            try:
                await self.purge_expired()
            except Exception:  # a database hiccup must not end the job
                log.exception("idempotency purge failed")
            await asyncio.sleep(every_seconds)
