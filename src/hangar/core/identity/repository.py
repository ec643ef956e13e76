"""Queries of the identity feature. Repositories flush, never commit."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.identity.models import Membership, OAuthIdentity, Team, User


class UserRepository:
    """Users and their OAuth identities."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, user_id: str) -> User | None:
        """An active user by id."""
        user = await self.session.get(User, user_id)
        return user if user is not None and user.deleted_at is None else None

    async def get_by_email(self, email: str) -> User | None:
        """An active user by normalised email."""
        stmt = select(User).where(User.email == email, User.deleted_at.is_(None))
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def email_taken(self, email: str) -> bool:
        """Whether any account, even a deleted one, holds this email."""
        stmt = select(func.count()).select_from(User).where(User.email == email)
        return bool((await self.session.execute(stmt)).scalar_one())

    async def search_by_email_prefix(self, prefix: str, limit: int) -> Sequence[User]:
        """Active users whose email starts with `prefix`, alphabetically."""
        stmt = (
            select(User)
            .where(User.email.startswith(prefix, autoescape=True), User.deleted_at.is_(None))
            .order_by(User.email)
            .limit(limit)
        )
        return (await self.session.execute(stmt)).scalars().all()

    async def add(self, user: User) -> User:
        """Insert a user."""
        self.session.add(user)
        await self.session.flush()
        return user

    async def get_by_identity(self, provider: str, subject: str) -> User | None:
        """The user linked to an OAuth account, if any."""
        stmt = (
            select(User)
            .join(OAuthIdentity, OAuthIdentity.user_id == User.id)
            .where(OAuthIdentity.provider == provider, OAuthIdentity.subject == subject)
            .where(User.deleted_at.is_(None))
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def link_identity(self, user_id: str, provider: str, subject: str) -> None:
        """Record that an OAuth account belongs to a user."""
        self.session.add(OAuthIdentity(user_id=user_id, provider=provider, subject=subject))
        await self.session.flush()


class TeamRepository:
    """Teams and memberships."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get(self, team_id: str) -> Team | None:
        """An active (not deleted) team."""
        team = await self.session.get(Team, team_id)
        return team if team is not None and team.deleted_at is None else None

    async def slug_exists(self, slug: str) -> bool:
        """Whether a slug was ever used, by a live or a deleted team."""
        stmt = select(func.count()).select_from(Team).where(Team.slug == slug)
        return bool((await self.session.execute(stmt)).scalar_one())

    async def add(self, team: Team) -> Team:
        """Insert a team."""
        self.session.add(team)
        await self.session.flush()
        return team

    async def membership(self, team_id: str, user_id: str) -> Membership | None:
        """A user's membership of a team."""
        return await self.session.get(Membership, (team_id, user_id))

    async def add_membership(self, membership: Membership) -> Membership:
        """Insert a membership."""
        self.session.add(membership)
        await self.session.flush()
        return membership

    async def remove_membership(self, membership: Membership) -> None:
        """Delete a membership."""
        await self.session.delete(membership)
        await self.session.flush()

    async def active_membership(self, team_id: str, user_id: str) -> Membership | None:
        """A user's membership of a team that is not deleted, read fresh from the database."""
        stmt = (
            select(Membership)
            .join(Team, Team.id == Membership.team_id)
            .where(
                Membership.team_id == team_id,
                Membership.user_id == user_id,
                Team.deleted_at.is_(None),
            )
            # Bypass the identity map: a row this session already holds may be stale.
            .execution_options(populate_existing=True)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()

    async def teams_of(self, user_id: str) -> Sequence[tuple[Team, Membership]]:
        """Active teams a user belongs to, oldest membership first."""
        stmt = (
            select(Team, Membership)
            .join(Membership, Membership.team_id == Team.id)
            .where(Membership.user_id == user_id, Team.deleted_at.is_(None))
            .order_by(Membership.joined_at, Team.created_at)
        )
        return [(t, m) for t, m in (await self.session.execute(stmt)).all()]

    async def members(self, team_id: str) -> Sequence[tuple[Membership, User]]:
        """A team's members with their accounts, in joining order."""
        stmt = (
            select(Membership, User)
            .join(User, User.id == Membership.user_id)
            .where(Membership.team_id == team_id, User.deleted_at.is_(None))
            .order_by(Membership.joined_at, User.email)
        )
        return [(m, u) for m, u in (await self.session.execute(stmt)).all()]
