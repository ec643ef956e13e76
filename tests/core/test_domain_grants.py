"""Single-use grants: hashed, with a TTL, spent by exactly one of many concurrent redeems."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hangar.core.clock import utcnow
from hangar.core.db import Database
from hangar.core.errors import DomainError, InvalidInput, Unauthenticated
from hangar.core.grants.models import Grant, GrantPurpose
from hangar.core.grants.service import GrantService
from hangar.core.security.opaque import hash_secret


async def _redeem(db: Database, token: str, purpose: GrantPurpose, subject: str | None) -> str:
    async with db.session() as session:
        try:
            grant = await GrantService(session).redeem(token, purpose, subject)
            return grant.id
        except DomainError as exc:
            return exc.code
        finally:
            await session.commit()  # a refused token is spent too: commit whatever happened


async def test_a_grant_redeemed_concurrently_wins_once(core_db: Database, team_id: str) -> None:
    async with core_db.session() as session:
        issued = await GrantService(session).issue(
            GrantPurpose.TERMINAL, "alloc-1", 300, team_id=team_id, scope="read-only"
        )
        await session.commit()
        grant_id = issued.grant.id
    assert issued.ttl_seconds == 300
    results = await asyncio.gather(
        *(_redeem(core_db, issued.token, GrantPurpose.TERMINAL, "alloc-1") for _ in range(20))
    )
    assert sorted(results) == sorted([grant_id] + [Unauthenticated.code] * 19)
    async with core_db.session() as session:
        row = (await session.execute(select(Grant).where(Grant.id == grant_id))).scalar_one()
    assert row.used_at is not None
    assert row.token_hash == hash_secret(issued.token) != issued.token  # only the hash is kept
    assert row.scope == "read-only"
    assert row.team_id == team_id


async def test_grants_are_refused_out_of_purpose_subject_or_time(
    core_db: Database, team_id: str
) -> None:
    async with core_db.session() as session:
        grants = GrantService(session)
        wrong_purpose = await grants.issue(GrantPurpose.INSTALL, team_id, 60)
        wrong_subject = await grants.issue(GrantPurpose.CONSOLE, "capsule-a", 60)
        expired = await grants.issue(GrantPurpose.CONSOLE, "capsule-b", 60)
        await session.execute(
            update(Grant)
            .where(Grant.id == expired.grant.id)
            .values(expires_at=utcnow() - timedelta(seconds=1))
        )
        with pytest.raises(InvalidInput):
            await grants.issue(GrantPurpose.CONSOLE, "capsule-a", 0)
        await session.commit()
    refused = Unauthenticated.code
    assert await _redeem(core_db, wrong_purpose.token, GrantPurpose.CONSOLE, None) == refused
    # Presented in the wrong place, it is spent anyway: worthless afterwards.
    assert await _redeem(core_db, wrong_purpose.token, GrantPurpose.INSTALL, None) == refused
    assert await _redeem(core_db, wrong_subject.token, GrantPurpose.CONSOLE, "other") == refused
    assert await _redeem(core_db, wrong_subject.token, GrantPurpose.CONSOLE, "capsule-a") == refused
    assert await _redeem(core_db, expired.token, GrantPurpose.CONSOLE, "capsule-b") == refused
    assert await _redeem(core_db, "nonsense", GrantPurpose.CONSOLE, None) == refused

    async with core_db.session() as session:
        grants = GrantService(session)
        fresh = await grants.issue(GrantPurpose.INSTALL, team_id, 60, prune=False)
        await session.commit()
        grant = await grants.redeem(fresh.token, GrantPurpose.INSTALL, team_id)
        await grants.grants.set_outcome(grant.id, "agent-7")
        await session.commit()
        # Install tokens keep their history (used, with the agent they made) when asked to.
        await grants.issue(GrantPurpose.INSTALL, team_id, 60, prune=False)
        await session.commit()
        kept = await session.scalars(
            select(Grant.outcome_id).where(
                Grant.purpose == GrantPurpose.INSTALL, Grant.subject_id == team_id
            )
        )
        # The spent wrong-purpose one above, the one that made agent-7, and the new one.
        assert sorted(kept.all(), key=str) == [None, None, "agent-7"]
        # By default issuing forgets the subject's spent and expired grants of that purpose.
        await grants.issue(GrantPurpose.INSTALL, team_id, 60)
        await session.commit()
        left = await session.scalars(
            select(Grant.id).where(
                Grant.purpose == GrantPurpose.INSTALL, Grant.subject_id == team_id
            )
        )
        assert len(left.all()) == 2  # the two unspent ones
