"""Signup, login, team switching and bearer-token authentication."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from hangar.core.auth.tokens import UserTokens
from hangar.core.errors import Conflict, Forbidden, NotFound, Unauthenticated
from hangar.core.identity import rules
from hangar.core.identity.models import Membership, Team, User
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.core.identity.repository import TeamRepository, UserRepository
from hangar.core.identity.service import TeamService
from hangar.core.security.passwords import PasswordHasher


@dataclass(frozen=True, slots=True)
class SignedIn:
    """The outcome of any sign-in: a token scoped to one team."""

    token: str
    user: User
    team: Team
    membership: Membership


class AuthService:
    """Password accounts and user tokens."""

    def __init__(self, session: AsyncSession, hasher: PasswordHasher, tokens: UserTokens):
        self.session = session
        self.hasher = hasher
        self.tokens = tokens
        self.users = UserRepository(session)
        self.teams = TeamRepository(session)
        self.team_service = TeamService(session)

    def _signed_in(self, user: User, team: Team, membership: Membership) -> SignedIn:
        token = self.tokens.issue(user, team.id, membership.role)
        return SignedIn(token, user, team, membership)

    async def create_account(
        self, email: str, name: str, password_hash: str | None
    ) -> tuple[User, Team, Membership]:
        """A new user with a personal team they own."""
        if await self.users.email_taken(email):
            raise Conflict("an account with this email already exists", code="email_taken")
        try:
            async with self.session.begin_nested():
                user = await self.users.add(
                    User(email=email, name=name, password_hash=password_hash)
                )
        except IntegrityError as exc:  # a concurrent signup won the race for this email
            raise Conflict("an account with this email already exists", code="email_taken") from exc
        access = await self.team_service.create(user.id, rules.personal_team_name(name))
        return user, access.team, access.membership

    async def signup(self, email: str, password: str, name: str) -> SignedIn:
        """Create a password account and sign it in to its personal team."""
        email = rules.normalize_email(email)
        rules.check_password(password)
        name = rules.check_user_name(name)
        password_hash = await self.hasher.hash(password)
        user, team, membership = await self.create_account(email, name, password_hash)
        return self._signed_in(user, team, membership)

    async def login(self, email: str, password: str) -> SignedIn:
        """Check a password and sign in to the user's default team."""
        key = rules.email_lookup_key(email)
        user = await self.users.get_by_email(key) if key is not None else None
        ok = await self.hasher.verify(user.password_hash if user else None, password)
        if user is None or not ok:
            raise Unauthenticated("invalid email or password", code="invalid_credentials")
        return await self.sign_in_default(user)

    async def sign_in_default(self, user: User) -> SignedIn:
        """A token for the user's default (oldest) team."""
        teams = await self.teams.teams_of(user.id)
        if not teams:
            raise Forbidden("user is not a member of any team", code="no_team")
        team, membership = teams[0]
        return self._signed_in(user, team, membership)

    async def switch_team(self, principal: Principal, team_id: str) -> SignedIn:
        """A token for another team the caller belongs to."""
        user = await self.users.get(principal.require_user())
        if user is None:
            raise Unauthenticated("invalid or expired token")
        team = await self.teams.get(team_id)
        if team is None:
            raise NotFound("team not found", code="team_not_found")
        membership = await self.teams.membership(team_id, user.id)
        if membership is None:
            raise Forbidden("not a member of this team", code="not_a_member")
        return self._signed_in(user, team, membership)

    async def authenticate(self, token: str) -> Principal:
        """The principal behind a user token, checked against the database on every use.

        A JWT lives for hours, so its claims alone prove nothing about now: the account, its
        membership of the token's team and that team must still exist, and the role is the
        one the database holds. A removed member's or a deleted team's tokens are refused
        from the commit that removed them on, on every face, stream and event stream.
        """
        claims = self.tokens.verify(token)
        user = await self.users.get(claims.user_id)
        if user is None:
            raise Unauthenticated("invalid or expired token")
        role = None
        if claims.team_id is not None:
            membership = await self.teams.active_membership(claims.team_id, user.id)
            if membership is None:
                raise Unauthenticated(
                    "this token's team access was revoked; sign in again", code="access_revoked"
                )
            role = membership.role
        return Principal(
            kind=CredentialKind.USER_TOKEN,
            team_id=claims.team_id,
            user_id=user.id,
            is_platform_admin=user.is_platform_admin,
            role=role,
        )
