"""Credentials that are not a user's session: personal access tokens and agent secrets."""

from __future__ import annotations

from typing import Protocol

from starlette.requests import HTTPConnection

from hangar.core.capsules.service import CapsuleService
from hangar.core.errors import Unauthenticated
from hangar.core.gpushare.service import GpuShareService
from hangar.core.hosts.service import HostService
from hangar.core.identity.principal import CredentialKind, Principal
from hangar.core.security.opaque import hash_secret
from hangar.web.authn.base import AuthContext
from hangar.web.credentials import bearer_token

PAT_PREFIX = "hpat_"
AGENT_SECRET_HEADER = "x-agent-secret"  # noqa: S105 - a header name
HOST_TOKEN_HEADER = "x-host-token"  # noqa: S105 - a header name


class PersonalTokenStore(Protocol):
    """Where personal access tokens live; looked up by hash only (PATs are a later issue)."""

    async def principal_for(self, token_hash: str, ctx: AuthContext) -> Principal | None:
        """The principal of a live token with this SHA-256 hash, None if none is."""
        ...


class PersonalTokenAuthenticator:
    """`Authorization: Bearer hpat_...`: claims only prefixed bearer tokens, so it goes before
    `user_jwt` in a chain and leaves JWTs to it."""

    name = "personal_token"
    challenge: str | None = None

    def __init__(self, store: PersonalTokenStore, *, prefix: str = PAT_PREFIX) -> None:
        self.store = store
        self.prefix = prefix

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        """The token's principal, None for no or another kind of bearer token."""
        token = bearer_token(conn)
        if token is None or not token.startswith(self.prefix):
            return None
        principal = await self.store.principal_for(hash_secret(token), ctx)
        if principal is None:
            raise Unauthenticated("invalid personal access token", code="invalid_token")
        return principal


class GpuAgentAuthenticator:
    """`X-Agent-Secret: <secret>` of a registered GPU agent (stored as a hash)."""

    name = "gpu_agent"
    challenge: str | None = "X-Agent-Secret"

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        """The agent as a principal of its team, None without the header."""
        secret = conn.headers.get(AGENT_SECRET_HEADER)
        if secret is None:
            return None
        agent = await GpuShareService(ctx.session).authenticate(secret)
        return Principal(
            kind=CredentialKind.GPU_AGENT, team_id=agent.team_id, user_id=None, agent_id=agent.id
        )


class HostTokenAuthenticator:
    """`X-Host-Token: <host JWT>` of a host agent; the host must still exist."""

    name = "host_token"
    challenge: str | None = "X-Host-Token"

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        """The host as a principal (of its team, if it has one), None without the header."""
        token = conn.headers.get(HOST_TOKEN_HEADER)
        if token is None:
            return None
        platform = ctx.platform
        capsules = CapsuleService(ctx.session, platform.fleet, platform.settings.capsules)
        hosts = HostService(ctx.session, platform.signer, platform.settings.hosts, capsules)
        host = await hosts.authenticate(token)
        return Principal(
            kind=CredentialKind.HOST_TOKEN, team_id=host.team_id, user_id=None, agent_id=host.id
        )
