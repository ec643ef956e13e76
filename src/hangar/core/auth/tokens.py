"""User tokens: JWTs scoped to one team."""

from __future__ import annotations

from dataclasses import dataclass

from hangar.core.errors import Unauthenticated
from hangar.core.identity.models import Role, User
from hangar.core.security.jwt import TokenSigner

USER_AUDIENCE = "hangar:user"


@dataclass(frozen=True, slots=True)
class UserClaims:
    """What a verified user token says."""

    user_id: str
    team_id: str | None


class UserTokens:
    """Issues and verifies user JWTs."""

    def __init__(self, signer: TokenSigner, ttl_seconds: int) -> None:
        self.signer = signer
        self.ttl_seconds = ttl_seconds

    def issue(self, user: User, team_id: str, role: Role) -> str:
        """A token for `user` acting in `team_id`."""
        return self.signer.issue(
            USER_AUDIENCE,
            user.id,
            self.ttl_seconds,
            team_id=team_id,
            role=role.value,
            email=user.email,
            name=user.name,
        )

    def verify(self, token: str) -> UserClaims:
        """The claims of a valid user token."""
        claims = self.signer.verify(token, USER_AUDIENCE)
        team_id = claims.get("team_id")
        if team_id is not None and not isinstance(team_id, str):
            raise Unauthenticated("invalid or expired token")
        return UserClaims(user_id=str(claims["sub"]), team_id=team_id)
