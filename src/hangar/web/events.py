"""`GET /events` on the main port: a team's events as a server-sent event stream.

Every replica's `platform.bus` carries every committed event (relayed locally, or fanned in
from NATS), so a client may connect to any replica. Only events of the token's team are sent.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Awaitable, Callable
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse
from starlette.responses import Response

from hangar.core.auth.service import AuthService
from hangar.core.errors import DomainError, Unauthenticated
from hangar.core.events.bus import EventBus
from hangar.core.events.envelope import Event
from hangar.core.identity.service import REVOCATION_EVENTS
from hangar.core.platform import Platform
from hangar.web.credentials import parse_bearer
from hangar.web.deps import PlatformDep
from hangar.web.streams.sse import EventStreamResponse, sse_message

__all__ = ["EventStreamResponse", "format_event", "router", "team_events"]

router = APIRouter(tags=["events"])

HEARTBEAT_SECONDS = 15.0  # a comment line this often keeps proxies from closing idle streams
CONNECTED = b": connected\n\n"  # sent once subscribed: events from here on are delivered
PING = b": ping\n\n"


def format_event(event: Event) -> bytes:
    """One SSE message: `id`, `event` (the type) and the envelope as one line of JSON."""
    return sse_message(event.id, event.type, event.to_json())


async def team_events(
    bus: EventBus,
    team_id: str,
    types: frozenset[str] | None,
    heartbeat: float,
    still_allowed: Callable[[], Awaitable[bool]] | None = None,
) -> AsyncGenerator[bytes, None]:
    """The SSE byte stream of one team's events, with a ping when nothing was sent a while.

    `still_allowed` is asked again whenever the team loses a member or is deleted, and at
    every ping (in case that event was missed): the stream ends once it says no.
    """
    async with bus.subscribe() as queue:
        yield CONNECTED
        last_sent = time.monotonic()
        while True:
            wait = last_sent + heartbeat - time.monotonic()
            try:
                if wait <= 0:
                    raise TimeoutError
                event = await bus.next(queue, wait)
            except TimeoutError:
                if still_allowed is not None and not await still_allowed():
                    return
                last_sent = time.monotonic()
                yield PING
                continue
            if event is None:
                return  # the server is stopping: end the stream instead of holding it up
            if event.team_id != team_id:
                continue
            if (
                event.type in REVOCATION_EVENTS
                and still_allowed is not None
                and not await still_allowed()
            ):
                return
            if types is not None and event.type not in types:
                continue
            last_sent = time.monotonic()
            yield format_event(event)


def _error(status: int, code: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"code": code, "message": message}}, status_code=status)


async def _team_of(platform: Platform, token: str | None) -> str:
    """The team a user token acts for; Unauthenticated or Forbidden otherwise."""
    if token is None:
        raise Unauthenticated("missing bearer token")
    async with platform.db.session() as session:  # closed before streaming starts
        principal = await AuthService(session, platform.hasher, platform.user_tokens).authenticate(
            token
        )
    return principal.require_team()


def _recheck(platform: Platform, token: str) -> Callable[[], Awaitable[bool]]:
    """Whether `token` still grants its team's events (membership, team, account, expiry)."""

    async def still_allowed() -> bool:
        try:
            await _team_of(platform, token)
        except DomainError:
            return False
        return True

    return still_allowed


@router.get(
    "/events",
    status_code=200,
    response_class=EventStreamResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": "the team's events"},
        401: {"description": "missing or invalid user token"},
    },
)
async def events(
    platform: PlatformDep,
    authorization: Annotated[str | None, Header()] = None,
    types: Annotated[str | None, Query(description="Only these event types: `a,b`")] = None,
) -> Response:
    """Stream the events of the token's team (`Authorization: Bearer <user JWT>`)."""
    token = parse_bearer(authorization)
    try:
        team_id = await _team_of(platform, token)
    except Unauthenticated as exc:
        response = _error(401, exc.code, exc.message)
        response.headers["WWW-Authenticate"] = "Bearer"
        return response
    except DomainError as exc:
        return _error(403, exc.code, exc.message)
    wanted = frozenset(t.strip() for t in (types or "").split(",") if t.strip()) or None
    assert token is not None  # _team_of refused a missing one
    stream = team_events(
        platform.bus, team_id, wanted, HEARTBEAT_SECONDS, _recheck(platform, token)
    )
    return EventStreamResponse(stream)
