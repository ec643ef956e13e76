"""A test face whose chain holds every authenticator, and fakes of the authn protocols."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request, Response, WebSocket
from fastapi.responses import JSONResponse
from starlette.requests import HTTPConnection

from hangar.core import errors as core
from hangar.core.identity.principal import Principal
from hangar.core.platform import Platform
from hangar.web.authn import authenticate
from hangar.web.authn.base import AuthContext
from hangar.web.authn.builtin import user_jwt_principal
from hangar.web.authn.cookie import is_https, issue_session
from hangar.web.authn.machines import (
    GpuAgentAuthenticator,
    HostTokenAuthenticator,
    PersonalTokenAuthenticator,
)
from hangar.web.authn.subprotocol import selected_subprotocol
from hangar.web.credentials import bearer_token
from hangar.web.deps import PlatformDep, SessionDep
from hangar.web.errors import Details, ErrorStyle
from hangar.web.registry import FaceSpec

NAME = "authn"


@dataclass
class FakeAuthenticator:
    """An authenticator that finds what it was told to: a principal, nothing, or a refusal."""

    name: str
    principal: Principal | None = None
    refuse: bool = False
    challenge: str | None = None
    calls: list[str] = field(default_factory=list)

    async def authenticate(self, conn: HTTPConnection, ctx: AuthContext) -> Principal | None:
        self.calls.append(conn.url.path)
        if self.refuse:
            raise core.Unauthenticated(f"{self.name} refused")
        return self.principal


@dataclass
class FakePatStore:
    """Personal access tokens by hash, as a PAT table would hold them."""

    tokens: dict[str, Principal] = field(default_factory=dict)

    async def principal_for(self, token_hash: str, ctx: AuthContext) -> Principal | None:
        return self.tokens.get(token_hash)


PATS = FakePatStore()
router = APIRouter(prefix="/v1")


def shown(principal: Principal) -> dict[str, Any]:
    return {
        "kind": principal.kind.value,
        "team_id": principal.team_id,
        "user_id": principal.user_id,
        "api_key_id": principal.api_key_id,
        "agent_id": principal.agent_id,
    }


@router.get("/whoami")
async def whoami(request: Request, platform: PlatformDep, session: SessionDep) -> dict[str, Any]:
    return shown(await authenticate(request, session, platform))


@router.post("/whoami")
async def change(request: Request, platform: PlatformDep, session: SessionDep) -> dict[str, Any]:
    return shown(await authenticate(request, session, platform))


@router.post("/session")
async def sign_in(
    request: Request, response: Response, platform: PlatformDep, session: SessionDep
) -> dict[str, str]:
    """Trade a user JWT (as a login returns) for a browser session."""
    token = bearer_token(request)
    if token is None:
        raise core.Unauthenticated("Authorization: Bearer <token> required")
    await user_jwt_principal(token, AuthContext(session, platform))
    return {"csrf": issue_session(response, token, secure=is_https(request), max_age=3600)}


@router.websocket("/ws")
async def ws(websocket: WebSocket) -> None:
    platform: Platform = websocket.app.state.platform
    try:
        async with platform.db.session() as session:
            principal = await authenticate(websocket, session, platform)
    except core.DomainError as exc:
        status = 403 if isinstance(exc, core.Forbidden) else 401
        await websocket.send_denial_response(JSONResponse({"code": exc.code}, status))
        return
    await websocket.accept(subprotocol=selected_subprotocol(websocket))
    await websocket.send_json(shown(principal))
    await websocket.close()


def render(
    conn: HTTPConnection, status: int, code: str, message: str, details: Details | None
) -> JSONResponse:
    return JSONResponse({"code": code, "message": message}, status_code=status)


FACE = FaceSpec(
    name=NAME,
    title="Authn test face",
    version="0.0.1",
    description="A face that exists only in the tests.",
    routers=[router],
    errors=ErrorStyle(
        render=render,
        statuses=[
            (core.Unauthenticated, 401, "unauthorized"),
            (core.Forbidden, 403, "forbidden"),
            (core.NotFound, 404, "not_found"),
        ],
        known_codes=frozenset({"csrf_failed", "invalid_token"}),
    ),
    authenticators=(
        "api_key",
        PersonalTokenAuthenticator(PATS),
        "user_jwt",
        "ws_subprotocol",
        "session_cookie",
        GpuAgentAuthenticator(),
        HostTokenAuthenticator(),
    ),
)
