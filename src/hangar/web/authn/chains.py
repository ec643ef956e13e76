"""Authenticators by name, and the chain a face declares (`FaceSpec.authenticators`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from sqlalchemy.ext.asyncio import AsyncSession
from starlette.requests import HTTPConnection

from hangar.core.identity.principal import Principal
from hangar.core.platform import Platform
from hangar.web import idempotency
from hangar.web.authn.base import AuthChain, AuthContext, Authenticator
from hangar.web.authn.builtin import ApiKeyAuthenticator, UserJwtAuthenticator
from hangar.web.authn.cookie import SessionCookieAuthenticator
from hangar.web.authn.subprotocol import SubprotocolAuthenticator

# Authenticators that need configuration (OIDC issuers, PAT stores, agent secrets) are
# passed to a FaceSpec as instances instead of names.
BUILTIN: dict[str, Callable[[], Authenticator]] = {
    "api_key": ApiKeyAuthenticator,
    "user_jwt": UserJwtAuthenticator,
    "ws_subprotocol": SubprotocolAuthenticator,
    "session_cookie": SessionCookieAuthenticator,
}


def build_chain(entries: Iterable[str | Authenticator]) -> AuthChain:
    """A chain of named built-ins and ready instances, in the given order."""
    authenticators: list[Authenticator] = []
    for entry in entries:
        if isinstance(entry, str):
            if entry not in BUILTIN:
                raise ValueError(f"unknown authenticator {entry!r}; known: {sorted(BUILTIN)}")
            authenticators.append(BUILTIN[entry]())
        else:
            authenticators.append(entry)
    return AuthChain(authenticators)


def face_chain(conn: HTTPConnection) -> AuthChain:
    """The chain of the face serving this request (set by `build_face`)."""
    chain: AuthChain = conn.app.state.auth_chain
    return chain


async def authenticate(
    conn: HTTPConnection, session: AsyncSession, platform: Platform
) -> Principal:
    """The caller, by the serving face's chain; HTTP and WebSocket alike."""
    principal = await face_chain(conn).authenticate(conn, AuthContext(session, platform))
    # Known who it is: claim the request's idempotency key for them (web/idempotency.py).
    await idempotency.guard(conn, principal)
    return principal
