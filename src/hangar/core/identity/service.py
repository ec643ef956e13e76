"""Teams, memberships and user lookup. Services flush but never commit."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.clock import utcnow
from hangar.core.errors import Forbidden, InvalidInput, NotFound
from hangar.core.events.outbox import record
from hangar.core.identity import rules
from hangar.core.identity.models import Membership, Role, Team, User
from hangar.core.identity.principal import Principal
from hangar.core.identity.repository import TeamRepository, UserRepository

USER_SEARCH_LIMIT = 10
# Recorded when someone loses a team's access; open event streams re-check on them.
MEMBER_REMOVED = "team.member_removed"
TEAM_DELETED = "team.deleted"
REVOCATION_EVENTS = frozenset({MEMBER_REMOVED, TEAM_DELETED})
_SLUG_ATTEMPTS = 8


@dataclass(frozen=True, slots=True)
class TeamAccess:
    """A team and the caller's membership of it, checked against the database."""

    team: Team
    membership: Membership


# What else goes with a deleted team, in its transaction (its API keys: `apikeys` sits
# above identity, so it hands its purge in rather than identity reaching up for it).
TeamDeletionHook = Callable[[str], Awaitable[None]]


class TeamService:
    """Everything about teams and who belongs to them."""

    def __init__(self, session: AsyncSession, on_delete: Sequence[TeamDeletionHook] = ()) -> None:
        self.session = session
        self.on_delete = tuple(on_delete)
        self.teams = TeamRepository(session)
        self.users = UserRepository(session)

    async def create(self, owner_id: str, name: str) -> TeamAccess:
        """A new team with `owner_id` as its owner."""
        name = rules.check_team_name(name)
        for _ in range(_SLUG_ATTEMPTS):
            slug = rules.new_team_slug()
            if not await self.teams.slug_exists(slug):
                break
        else:  # pragma: no cover - 16M slugs make this practically unreachable
            raise InvalidInput("could not allocate a team slug; try again")
        team = await self.teams.add(Team(name=name, slug=slug))
        membership = await self.teams.add_membership(
            Membership(team_id=team.id, user_id=owner_id, role=Role.OWNER)
        )
        return TeamAccess(team, membership)

    async def list_for_user(self, user_id: str) -> Sequence[TeamAccess]:
        """Active teams of a user with the user's role in each."""
        return [TeamAccess(t, m) for t, m in await self.teams.teams_of(user_id)]

    async def default_team(self, user_id: str) -> Team | None:
        """The team a fresh login is scoped to: the user's oldest active membership."""
        teams = await self.teams.teams_of(user_id)
        return teams[0][0] if teams else None

    async def access(self, principal: Principal, team_id: str) -> TeamAccess:
        """Check that the caller's credential is scoped to `team_id` and that they belong."""
        if principal.team_id != team_id:
            raise Forbidden("credential is scoped to another team", code="team_mismatch")
        team = await self.teams.get(team_id)
        if team is None:
            raise NotFound("team not found", code="team_not_found")
        user_id = principal.require_user()
        membership = await self.teams.membership(team_id, user_id)
        if membership is None:
            raise Forbidden("not a member of this team", code="not_a_member")
        return TeamAccess(team, membership)

    async def manage(self, principal: Principal, team_id: str) -> TeamAccess:
        """Like `access`, and the caller must be an owner or admin."""
        acc = await self.access(principal, team_id)
        if not acc.membership.role.can_manage:
            raise Forbidden("owner or admin role required", code="insufficient_role")
        return acc

    async def members(
        self, principal: Principal, team_id: str
    ) -> Sequence[tuple[Membership, User]]:
        """Members of a team the caller belongs to."""
        await self.access(principal, team_id)
        return await self.teams.members(team_id)

    async def rename(self, principal: Principal, team_id: str, name: str) -> Team:
        """Rename a team (owner or admin)."""
        name = rules.check_team_name(name)
        acc = await self.manage(principal, team_id)
        acc.team.name = name
        return acc.team

    async def delete(self, principal: Principal, team_id: str) -> Team:
        """Soft-delete a team (owner only); its slug stays taken for good.

        From the commit on, every token and key of the team is refused (authentication
        checks the team on each request) and its keys are gone. Its capsules are the
        caller's next step (capsules/teardown.py), once this is committed.
        """
        acc = await self.access(principal, team_id)
        if acc.membership.role is not Role.OWNER:
            raise Forbidden("only the owner can delete the team", code="insufficient_role")
        # Conditional, so of two concurrent deletes exactly one records the deletion.
        done = await self.session.execute(
            update(Team)
            .where(Team.id == team_id, Team.deleted_at.is_(None))
            .values(deleted_at=utcnow())
            .execution_options(synchronize_session=False)
        )
        if getattr(done, "rowcount", 0) != 1:
            raise NotFound("team not found", code="team_not_found")
        for hook in self.on_delete:
            await hook(team_id)
        record(self.session, TEAM_DELETED, team_id=team_id, payload={"team_id": team_id})
        await self.session.refresh(acc.team)
        return acc.team

    async def add_member(
        self, principal: Principal, team_id: str, email: str
    ) -> tuple[Membership, User]:
        """Add an existing account to the team as a member (owner or admin)."""
        await self.manage(principal, team_id)
        user = await self.users.get_by_email(rules.normalize_email(email))
        if user is None:
            raise NotFound("no account with that email", code="user_not_found")
        if await self.teams.membership(team_id, user.id) is not None:
            raise InvalidInput("user is already a member", code="already_member")
        membership = await self.teams.add_membership(
            Membership(team_id=team_id, user_id=user.id, role=Role.MEMBER)
        )
        return membership, user

    async def _target(self, team_id: str, user_id: str) -> Membership:
        membership = await self.teams.membership(team_id, user_id)
        if membership is None:
            raise NotFound("user is not a member", code="member_not_found")
        return membership

    async def set_role(
        self, principal: Principal, team_id: str, user_id: str, role: Role
    ) -> Membership:
        """Make a member an admin or a plain member; the owner's role never changes."""
        await self.manage(principal, team_id)
        if role is Role.OWNER:
            raise InvalidInput("role must be admin or member", code="invalid_role")
        target = await self._target(team_id, user_id)
        if target.role is Role.OWNER:
            raise Forbidden("the owner's role cannot be changed", code="owner_immutable")
        target.role = role
        return target

    async def remove_member(self, principal: Principal, team_id: str, user_id: str) -> None:
        """Remove a member (owner or admin); the owner cannot be removed."""
        await self.manage(principal, team_id)
        target = await self._target(team_id, user_id)
        if target.role is Role.OWNER:
            raise Forbidden("the owner cannot be removed", code="owner_immutable")
        await self._remove(target)

    async def _remove(self, membership: Membership) -> None:
        """Delete a membership; the member's tokens for the team are refused from the commit."""
        team_id, user_id = membership.team_id, membership.user_id
        await self.teams.remove_membership(membership)
        record(self.session, MEMBER_REMOVED, team_id=team_id, payload={"user_id": user_id})

    async def leave(self, principal: Principal, team_id: str) -> None:
        """Leave a team; the owner must delete it instead."""
        acc = await self.access(principal, team_id)
        if acc.membership.role is Role.OWNER:
            raise Forbidden(
                "the owner cannot leave; delete the team instead", code="owner_cannot_leave"
            )
        await self._remove(acc.membership)


class UserService:
    """Looking people up."""

    def __init__(self, session: AsyncSession) -> None:
        self.users = UserRepository(session)

    async def search(self, email_prefix: str) -> Sequence[User]:
        """Up to ten users whose email starts with a prefix that contains '@'."""
        prefix = email_prefix.strip().lower()
        if "@" not in prefix:
            raise InvalidInput("email prefix must contain '@'", code="invalid_prefix")
        if not rules.storable(prefix):  # no stored email can contain it
            return []
        return await self.users.search_by_email_prefix(prefix, USER_SEARCH_LIMIT)

    async def get(self, user_id: str) -> User | None:
        """An active user."""
        return await self.users.get(user_id)
