"""Core objects to Wrenn wire models, with Wrenn-style ids."""

from __future__ import annotations

from hangar.core.apikeys.models import ApiKey
from hangar.core.auth.service import SignedIn
from hangar.core.identity.models import Membership, User
from hangar.core.identity.models import Team as CoreTeam
from hangar.faces.wrenn import ids
from hangar.faces.wrenn import schemas as w


def auth(signed: SignedIn) -> w.AuthResponse:
    """An AuthResponse."""
    return w.AuthResponse(
        token=signed.token,
        user_id=ids.encode(ids.USER, signed.user.id),
        team_id=ids.encode(ids.TEAM, signed.team.id),
        email=signed.user.email,
        name=signed.user.name,
    )


def api_key(key: ApiKey, plaintext: str | None = None) -> w.APIKeyResponse:
    """An APIKeyResponse; the plaintext only on creation."""
    return w.APIKeyResponse(
        id=ids.encode(ids.KEY, key.id),
        team_id=ids.encode(ids.TEAM, key.team_id),
        name=key.name,
        key_prefix=key.key_prefix,
        created_by=ids.encode(ids.USER, key.created_by) if key.created_by else None,
        created_at=key.created_at,
        last_used=key.last_used_at,
        key=plaintext,
    )


def team(t: CoreTeam) -> w.Team:
    """A Team."""
    return w.Team(id=ids.encode(ids.TEAM, t.id), name=t.name, slug=t.slug, created_at=t.created_at)


def team_with_role(t: CoreTeam, m: Membership) -> w.TeamWithRole:
    """A TeamWithRole."""
    return w.TeamWithRole(**team(t).model_dump(), role=m.role.value)


def member(m: Membership, u: User) -> w.TeamMember:
    """A TeamMember."""
    return w.TeamMember(
        user_id=ids.encode(ids.USER, u.id),
        email=u.email,
        name=u.name,
        role=m.role.value,
        joined_at=m.joined_at,
    )


def user_hit(u: User) -> w.UserSearchResult:
    """A UserSearchResult."""
    return w.UserSearchResult(user_id=ids.encode(ids.USER, u.id), email=u.email)
