"""Who is acting: the result of authenticating any credential, in any face."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from hangar.core.identity.models import Role


class CredentialKind(enum.StrEnum):
    """How the caller proved who they are."""

    USER_TOKEN = "user_token"  # noqa: S105 - a credential kind, not a secret
    API_KEY = "api_key"
    PERSONAL_TOKEN = "personal_token"  # noqa: S105 - a credential kind, not a secret
    OIDC_TOKEN = "oidc_token"  # noqa: S105 - a credential kind, not a secret
    GPU_AGENT = "gpu_agent"
    HOST_TOKEN = "host_token"  # noqa: S105 - a credential kind, not a secret


@dataclass(frozen=True, slots=True)
class Principal:
    """An authenticated caller and the one team its credential acts for."""

    kind: CredentialKind
    team_id: str | None
    user_id: str | None
    is_platform_admin: bool = False
    api_key_id: str | None = None
    # A user token's role in its team, as the database had it when the request began.
    role: Role | None = None
    # The machine behind an agent credential (a GPU agent's or a host's id).
    agent_id: str | None = None

    def require_team(self) -> str:
        """The team this credential acts for."""
        from hangar.core.errors import Forbidden

        if self.team_id is None:
            raise Forbidden("this credential acts for no team", code="no_team")
        return self.team_id

    def require_user(self) -> str:
        """The acting user's id; credentials without a user may not do user-only things."""
        from hangar.core.errors import Forbidden

        if self.user_id is None or self.kind is not CredentialKind.USER_TOKEN:
            raise Forbidden("this operation needs a user's token")
        return self.user_id
